"""The shipped signatures and policy, installed as package data of ``classifier._signatures``."""
