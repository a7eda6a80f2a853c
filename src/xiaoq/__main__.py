"""Allow ``python -m xiaoq``."""

from xiaoq.cli import main

if __name__ == "__main__":
    main()
