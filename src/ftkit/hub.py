"""Pushing an export folder to the Hugging Face hub with ``huggingface_hub``.

The token comes from the environment (``HF_TOKEN``) or the login cache (``hf auth login``), as
``huggingface_hub.get_token()`` finds it; it is handed to the API client in memory and never written
anywhere. Both checks (repo id, token) run before anything is exported.
"""

from __future__ import annotations

from pathlib import Path

from ftkit.errors import FtkitError


def check_push(repo_id: str) -> str:
    """The token to push with, after checking ``repo_id`` is ``OWNER/NAME``; one-line errors otherwise."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    hint = "pass --push-to-hub OWNER/NAME, e.g. my-org/ner-minilm"
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise FtkitError(f"malformed hub repo id '{repo_id}': expected OWNER/NAME", hint=hint)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise FtkitError(f"malformed hub repo id '{repo_id}': {' '.join(str(e).split())[:160]}", hint=hint) from None
    token = get_token()
    if not token:
        raise FtkitError("no Hugging Face token to push with",
                         hint="set HF_TOKEN, or log in once with `hf auth login`")
    return token


def push_folder(folder: Path, repo_id: str, token: str, private: bool = False, message: str = "") -> str:
    """Create ``repo_id`` (if needed) and upload every file of ``folder``; returns the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message=message or "Upload model exported by ftkit")
    except Exception as e:  # noqa: BLE001 - network, permission and HTTP errors of every kind
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise FtkitError(f"pushing to the hub repo '{repo_id}' failed: {first}") from None
    return str(url)
