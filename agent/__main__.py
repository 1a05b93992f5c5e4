"""``python -m agent``: run the traffic agent from its injected environment."""

from __future__ import annotations

import logging
import sys

import anyio

from agent.app import Agent
from agent.config import ConfigError, from_env


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = from_env()
    except ConfigError as exc:
        print(f"waylay agent: {exc.title}: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(Agent(settings).run)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
