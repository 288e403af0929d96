"""Events in: the canonical event model, the topic catalogue, codecs, publishing and the gateway."""
