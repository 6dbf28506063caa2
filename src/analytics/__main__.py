"""`python -m analytics`: the same as the `analytics` command."""

from analytics.cli import main

if __name__ == "__main__":
    main()
