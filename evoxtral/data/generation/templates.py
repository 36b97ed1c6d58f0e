"""Text banks for the offline script generator: sentences per domain, their slot fillers, and neutral words.

Sentences are written in the register ElevenLabs v3 scripts use (spoken, first person, contractions). Emphasis
capitals and ellipses are added by the generator, not written here, so their rate is a setting.
"""

from __future__ import annotations

FILLERS: dict[str, tuple[str, ...]] = {
    "place": (
        "the new restaurant downtown", "the office", "my sister's place", "the park by the river", "the airport",
        "the library", "that little cafe on the corner", "the train station", "the hospital", "the beach",
    ),
    "time": ("this weekend", "tomorrow morning", "next Tuesday", "tonight", "after lunch", "next month", "on Friday"),
    "person": (
        "Sarah", "my manager", "the neighbours", "David", "our landlord", "my brother", "the new intern",
        "Professor Lee", "Grandma", "the whole team",
    ),
    "thing": (
        "the report", "the car keys", "the budget", "the contract", "my phone", "the tickets", "the package",
        "the slides", "the wedding plans", "the old photos",
    ),
    "topic": (
        "remote work", "the housing market", "sleep", "electric cars", "public transport", "coffee",
        "city gardens", "online privacy", "learning a new language", "running a small business",
    ),
    "number": ("three", "twenty", "a hundred", "two thousand", "fifteen", "forty", "six"),
    "activity": (
        "try that new restaurant", "go for a run", "fix the kitchen sink", "watch the game", "visit my parents",
        "finish the project", "paint the spare room", "take the early train",
    ),
}  # fmt: skip

DOMAIN_SENTENCES: dict[str, tuple[str, ...]] = {
    "conversation": (
        "So I was thinking maybe we could {activity} {time}.",
        "Did you hear what happened with {person}?",
        "I honestly thought you were joking about {thing}.",
        "We should probably leave for {place} soon.",
        "Wait, you mean {person} already knew?",
        "I can't believe you forgot {thing} again.",
        "Okay, but promise me you won't tell {person}.",
        "It was the strangest thing I've seen all week.",
        "You always say that, and then nothing changes.",
    ),
    "monologue": (
        "Sometimes I wonder why I keep coming back to {place}.",
        "I used to think {topic} didn't matter to me.",
        "Every time I open {thing}, I remember that summer.",
        "Maybe this is just how things are supposed to be.",
        "I promised myself I would {activity} {time}.",
        "Nobody warned me it would feel this heavy.",
        "There's a version of me that would have said yes.",
        "I keep replaying that conversation with {person}.",
    ),
    "podcast": (
        "Welcome back to the show, today we're talking about {topic}.",
        "My guest spent {number} years studying {topic}.",
        "Before we start, a quick thank you to everyone who wrote in.",
        "That is a wild statistic, I had no idea.",
        "Let's take a question from one of our listeners.",
        "I think our audience is going to love this one.",
        "We'll be right back after a short break.",
        "So what actually got you interested in {topic}?",
    ),
    "presentation": (
        "Good morning everyone, thank you for coming.",
        "On this slide you can see the numbers for the last quarter.",
        "Our team grew by {number} people this year.",
        "The main risk is {thing}, and we have a plan for it.",
        "Let me walk you through the next three steps.",
        "If there are no questions, I'll move on to the budget.",
        "This is the result we are most proud of.",
        "We expect to launch before the end of next month.",
    ),
    "argument": (
        "You said you would handle {thing}, and you didn't.",
        "That is not what I meant and you know it.",
        "Why do we have to have this conversation every single time?",
        "I'm not the one who forgot about {place}.",
        "Fine, then you explain it to {person}.",
        "Stop changing the subject, we're talking about {thing}.",
        "I have been patient for {number} weeks.",
        "Don't you dare walk away from me right now.",
    ),
    "storytelling": (
        "Once upon a time there was a girl who lived near {place}.",
        "The old door creaked open, and nobody was there.",
        "He reached into his pocket, but {thing} was gone.",
        "And that was the night everything changed.",
        "The forest went quiet, as if it was listening.",
        "She ran as fast as she could toward {place}.",
        "Years later, {person} would still tell this story.",
        "Nobody in the village believed a word of it.",
    ),
    "interview": (
        "Thank you for having me, it's great to be here.",
        "Tell me about a time you had to deal with a difficult client.",
        "I spent {number} years working at a small startup.",
        "What would you say is your biggest weakness?",
        "Honestly, I learned the most from my mistakes.",
        "Where do you see yourself in five years?",
        "I think I would be a really good fit for the team.",
        "Do you have any questions for us before we finish?",
    ),
    "voicemail": (
        "Hi, it's me again, just calling about {thing}.",
        "Sorry I missed your call, I was at {place}.",
        "Can you call me back when you get this?",
        "I wanted to let you know that {person} is coming {time}.",
        "Don't worry about {thing}, I sorted it out.",
        "Okay, that's all, talk to you soon.",
        "I'll try you again {time} if I don't hear back.",
        "Hey, it's about the plans for {time}, call me.",
    ),
}

# Concrete everyday words for scripts whose words must say nothing about their tags (the learning check):
# no feelings, no sounds, no verbs of speaking. The generator also drops any word the vocabulary knows as a tag.
NEUTRAL_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        """
    apple table river window garden paper bottle pencil mountain orange ladder carpet button kettle mirror
    basket candle bridge rocket island forest pocket jacket camera violin tomato pepper yellow purple silver
    copper marble cotton wooden plastic seven eleven twelve thirty morning evening winter summer autumn
    spring monday friday harbour castle village market bakery station library museum kitchen bedroom
    ceiling balcony chimney engine bicycle tractor blanket pillow sandwich noodle biscuit lemon cherry
    carrot potato onion garlic butter cheese honey salad pizza coffee sugar flour pepper salt stone pebble
    shell feather leather canvas helmet saddle anchor compass lantern hammer shovel bucket brush needle
    thread ribbon zipper pocket wallet ticket letter parcel stamp envelope folder printer monitor keyboard
    cable socket plug battery magnet mirror curtain sofa chair desk drawer shelf cupboard fridge oven
    toaster spoon fork plate bowl glass jug teapot tray napkin towel soap sponge bucket ladder fence
    gate path road tunnel valley meadow desert canyon glacier volcano planet comet galaxy meteor orbit
    cloud rain snow frost breeze thunder tiger zebra rabbit turtle dolphin penguin parrot falcon beetle
    spider lizard camel donkey pony kitten puppy walrus otter badger squirrel hedgehog salmon lobster
    oyster carpenter farmer pilot dentist baker tailor painter sailor driver author doctor lawyer teacher
    plumber banker dancer""".split()
    )
)
