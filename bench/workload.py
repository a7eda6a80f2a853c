"""The requests the scenarios send: prompts, conversations and filler text, deterministic per seed.

Every request starts its system message with a nonce unique to the (run, repetition, user), so
neither server can serve a repetition from the KV states of an earlier one; within a conversation
the nonce stays fixed, so a server that reuses the growing history's prefix is credited for it.
Both servers get byte-identical messages and render them with the same GGUF chat template.
"""

from __future__ import annotations

import hashlib
import random
from typing import Optional

SYSTEM = "You are a helpful assistant."

# ~30 prompt tokens in total with the ChatML template and the short system message.
SHORT_QUESTION = "Write a Python function that checks whether a number is prime."

# Asks for a long answer, for servers that cannot be told to ignore end-of-generation.
LONG_QUESTION = (
    "Write a complete, long Python module implementing a bank account system with classes for "
    "accounts, customers and transactions, with docstrings, type hints and many methods."
)

CONVERSATION_TURNS = [
    "I am writing a small inventory tool in Python. How should I store products?",
    "Add a function that adds a product with a name, a price and a quantity.",
    "Now write a function that removes a product by name.",
    "How do I save the inventory to a JSON file?",
    "And load it back when the program starts?",
    "Add a function that lists products whose quantity is below a threshold.",
    "How would I sort the products by price?",
    "Write a unit test for the add function.",
    "How can I make the prices use Decimal instead of float?",
    "Add a command-line interface with argparse.",
    "How do I handle a missing or corrupt JSON file gracefully?",
    "Summarize the design of the tool in three sentences.",
]

_WORDS = (
    "the company office policy employee customer order product service support team manager "
    "holiday payment invoice account report meeting project schedule delivery return warranty "
    "price discount contract client request approval budget training security password network "
    "printer email phone address city week month year day morning evening rule process form "
    "record system data file folder document note question answer problem solution update"
).split()


def nonce(run_id: str, *parts: object) -> str:
    """A tag making a system prompt unique to one run / repetition / scenario / user."""
    return "-".join([run_id, *map(str, parts)])


def short_code(tag: str) -> str:
    """Six letters derived from ``tag``: unique enough, and only a few tokens (digits cost one
    token each in Qwen's vocabulary, which would bloat the ~30-token "short prompt")."""
    digest = hashlib.blake2b(tag.encode(), digest_size=8).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest[:6])


def system_message(tag: str) -> dict[str, str]:
    return {"role": "system", "content": f"({short_code(tag)}) {SYSTEM}"}


def filler(n_words: int, seed: int) -> str:
    """Plain English-like text of ``n_words`` common words (about one Qwen token per word)."""
    rng = random.Random(seed)
    sentences = []
    count = 0
    while count < n_words:
        k = min(rng.randint(8, 16), n_words - count)
        words = [rng.choice(_WORDS) for _ in range(k)]
        sentences.append(" ".join(words).capitalize() + ".")
        count += k
    return " ".join(sentences)


def document_question(tag: str, n_words: int, seed: int) -> str:
    """A first user turn carrying a document (a company FAQ, say) and a question about it."""
    return (f"Here is our internal document {tag}:\n\n{filler(n_words, seed)}\n\n"
            "Please answer my questions about it briefly.")


def user_followups(user: int) -> list[str]:
    """Follow-up questions for one of the alternating users (distinct per user)."""
    topics = ["holidays", "payments", "returns", "passwords", "printers", "meetings", "budgets",
              "deliveries", "contracts", "training", "reports", "warranties"]
    rot = topics[user * 3:] + topics[:user * 3]
    return [f"What does the document say about {t}?" for t in rot]


def long_prompt_messages(tag: str, n_words: int, seed: int) -> list[dict[str, str]]:
    """A single request with a long prompt (the 1,500-token scenario)."""
    return [system_message(tag), {"role": "user", "content": document_question(tag, n_words, seed)}]


def short_messages(tag: str, question: Optional[str] = None) -> list[dict[str, str]]:
    return [system_message(tag), {"role": "user", "content": question or SHORT_QUESTION}]


#: A function with a bug (the loop skips the last item): fixing it means writing most of it out again.
BUGGY_FUNCTION = """def summarize_orders(orders, currency="EUR"):
    \"\"\"Total, count and largest order of the orders paid in one currency.\"\"\"
    total = 0.0
    count = 0
    largest = None
    for i in range(len(orders) - 1):
        order = orders[i]
        if order["currency"] != currency or not order["paid"]:
            continue
        total += order["amount"]
        count += 1
        if largest is None or order["amount"] > largest["amount"]:
            largest = order
    average = total / count if count else 0.0
    return {"total": round(total, 2), "count": count, "average": round(average, 2), "largest": largest}
"""


def quoting_messages(tag: str, kind: int) -> list[dict[str, str]]:
    """A request whose answer copies from its prompt: a bug fix that rewrites the function, or a
    knowledge-base style answer that quotes a passage."""
    if kind % 2 == 0:
        question = f"Fix the bug in this function and write out the whole corrected function:\n\n{BUGGY_FUNCTION}"
    else:
        passage = filler(160, seed=31 + kind)
        question = (f"Passage [1] of our handbook:\n\n{passage}\n\n"
                    "Quote passage [1] word for word, then say in one sentence what it is about.")
    return [system_message(tag), {"role": "user", "content": question}]
