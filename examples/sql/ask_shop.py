"""Ask a small shop database questions with the embedded model (runs offline, ~1 minute).

    .venv/bin/python examples/sql/ask_shop.py
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from openautoglm import SemanticParser

EXAMPLES = [  # your own question/SQL pairs: retrieved by similarity as few-shot examples
    {"question": "How many customers are there?", "query": "SELECT count(*) FROM customers"},
    {"question": "List the names of products cheaper than 10.", "query": "SELECT name FROM products WHERE price < 10"},
    {"question": "What is the total amount per year?", "query": "SELECT year, sum(amount) FROM sales GROUP BY year"},
]


def build_shop(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);
        CREATE TABLE sales (id INTEGER PRIMARY KEY, product_id INTEGER REFERENCES products(id),
                            year INTEGER, amount REAL);
        INSERT INTO products VALUES (1,'Laptop','Electronics',900),(2,'Phone','Electronics',600),
                                    (3,'Desk','Furniture',250),(4,'Novel','Books',15);
        INSERT INTO sales VALUES (1,1,2023,1500000),(2,2,2023,800000),(3,3,2022,1200000),(4,4,2023,90000);
    """)
    con.commit()
    con.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "shop.db"
        build_shop(db)
        parser = SemanticParser("local", f"sqlite:///{db}", examples=EXAMPLES, n_candidates=3, store=False)
        for question in ["How many products are there?", "What is the total amount per year?",
                         "找出2023年销售额超过百万的产品类别"]:
            result = parser.parse(question)
            print(f"\nQ: {question}\nSQL ({result.confidence:.0%} agree): {result.sql}")
            print(f"rows: {result.rows}" if result.ok else f"error: {result.error}")
        parser.close()


if __name__ == "__main__":
    main()
