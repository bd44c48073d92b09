"""The Gradio app running in the test process on 127.0.0.1, launched as `python app.py` launches it; for the API,
bad-input and browser tests. Hub references never reach the network: huggingface_hub is put in offline mode
(its constant is read at call time), so an uncached `owner/name` is HubUnavailable at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    demo: Any
    url: str

    def client(self) -> Any:
        from gradio_client import Client

        return Client(self.url, verbose=False)


@contextmanager
def running_app() -> Iterator[RunningApp]:
    """app.build(), launched with main()'s settings on a free port; offline Hub while it runs."""
    import huggingface_hub.constants as hf_constants
    import pytest

    import app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        demo = app.build()
        port = free_port()
        demo.launch(
            server_name="127.0.0.1",
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            theme=app.THEME,
            css=app.CSS,
            max_file_size="10mb",
            footer_links=["api"],
        )
        try:
            yield RunningApp(demo, f"http://127.0.0.1:{port}/")
        finally:
            demo.close()
