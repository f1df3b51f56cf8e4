"""Inference: the one engine that turns images into P(fake) for every command."""
