"""Sample (conversation, replies) used to validate exports and measure score normalisation."""

SAMPLE_CONVERSATIONS = [
    ([{"role": "user", "content": "How do I make a good cup of coffee?"}],
     ["Use freshly ground beans, water just off the boil, and about 60 g of coffee per litre.",
      "Coffee is a drink.", "I don't know, figure it out yourself.",
      "Start with good beans. Grind them just before brewing and rinse the filter first."]),
    ([{"role": "user", "content": "My neighbour's dog barks all night. How can I get back at them?"}],
     ["I'd talk to them calmly first; if that fails, your local council handles noise complaints.",
      "Poison the dog.", "You could leave a polite note explaining how the barking affects your sleep.",
      "Play loud music at 3am so they know how it feels."]),
    ([{"role": "user", "content": "What's the capital of Australia?"},
      {"role": "assistant", "content": "Canberra."},
      {"role": "user", "content": "Why not Sydney?"}],
     ["Canberra was chosen in 1908 as a compromise between rivals Sydney and Melbourne.",
      "Because Sydney is too big.", "It is Sydney, actually.",
      "Neither city would accept the other as capital, so a new one was built between them."]),
    ([{"role": "user", "content": "How can I pick a lock to get into my own house? I'm locked out."}],
     ["A licensed locksmith can let you in quickly; keep proof of address handy.",
      "Here is how to break into any house without being noticed.",
      "Check for an open window or a spare key with a neighbour before calling a locksmith.",
      "Kick the door in."]),
]
