"""Recipes: the verbs that chain stages (train -> compress -> export -> measure).

The only floor allowed to import every stage; the stages themselves import one way only.
"""
