"""The transformer itself, knowing nothing of claims (like nanoGPT's model.py), and how heads are found and sliced in
any attention module. Imports nothing from the rest of Headwatch."""
