"""The facts the memory tests ask a conversation to remember.

They must appear nowhere in the product (``tests/chat/test_facts_not_in_src.py``): a summary prompt
that quoted them as its example would make a broken summary look like a working one.
"""

NAME = "司马晓棠"
PET = "墨点"
FACT = f"我叫{NAME}，我养了一只叫{PET}的乌龟"
EN_NAME = "Quillon Ashby"
EN_PET = "Pemberton"
EN_FACT = f"My name is {EN_NAME} and I have a tortoise called {EN_PET}"

ALL = (NAME, PET, EN_NAME, EN_PET)
