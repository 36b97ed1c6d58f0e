"""``python -m studio``: the Gradio studio (see studio/app.py)."""

from studio.app import main

if __name__ == "__main__":
    main()
