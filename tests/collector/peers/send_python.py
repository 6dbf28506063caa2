"""Send a scenario file with a real Python client (run inside the peers' venv).

Usage: python send_python.py MODULE URL WRITE_KEY SCENARIO.json, where MODULE is the client's
package (``segment.analytics``, ``rudderstack.analytics``). Exits 1, printing the errors, when
the client reported any.
"""

import importlib
import json
import sys
from datetime import datetime

SNAKE = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "messageId": "message_id",
    "groupId": "group_id",
    "previousId": "previous_id",
}


def main() -> int:
    module, url, key, path = sys.argv[1:5]
    errors = []
    client_class = importlib.import_module(module + ".client").Client
    client = client_class(key, host=url, on_error=lambda exc, batch: errors.append(repr(exc)))
    with open(path, encoding="utf-8") as file:
        messages = json.load(file)
    for message in messages:
        kwargs = {SNAKE.get(k, k): v for k, v in message.items() if k != "type"}
        kwargs["timestamp"] = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
        getattr(client, message["type"])(**kwargs)
    client.flush()
    client.shutdown()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
