import os
import sys
from pathlib import Path

import pytest

# Tests never touch the network and never share a cache with the user.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "src" / "ftkit" / "samples" / "conll2003"
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["FTKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("ftkit-cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run several times faster on one thread than on two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package) driven by Playwright, which downloads no browser of its own.

    Skips when chromium or playwright is missing, unless FTKIT_REQUIRE_BROWSER=1 (CI sets it)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not exe or sync_playwright is None:
        missing = "chromium" if not exe else "playwright"
        if os.environ.get("FTKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing} is missing, and FTKIT_REQUIRE_BROWSER=1")
        pytest.skip(f"{missing} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random checkpoints per family, built once per session and loaded like real ones."""
    from tiny_models import DEFAULT_CORPUS, build_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-models")
    corpus = [line.split()[0] for line in (SAMPLES / "train.txt").read_text().splitlines() if line.strip()]
    sentences = [" ".join(corpus[i:i + 12]) for i in range(0, len(corpus), 12)]
    built = {}

    def get(family: str) -> Path:
        if family not in built:
            # the CoNLL sample's words plus the default corpus (accents, digits, punctuation)
            built[family] = build_tiny_checkpoint(family, root / family, corpus=sentences + list(DEFAULT_CORPUS))
        return built[family]

    return get


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def facts(task, labels=(), max_length=128, family="encoder"):
    """The Facts the engine would resolve, for calling a task's methods directly in a test."""
    from ftkit.tasks.base import Facts

    return Facts(task=task.name, labels=tuple(labels), family=family, max_length=max_length, options=task.options)
