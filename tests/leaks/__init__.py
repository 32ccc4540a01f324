"""The leak benchmark: adversarial replies from a seeded grammar, streamed in every
provider shape and cut at random, through the reply inspector; what was spoken and
acted on against what must be (``make leaks``; short version in ``make test``)."""
