"""A tiny Django project whose views keep agent conversations with agents_persist.django."""
