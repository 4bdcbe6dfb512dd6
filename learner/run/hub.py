"""`output.push_to_hub`: upload <run_dir>/lora (weights, model card, evaluation grid) to a Hugging
Face Hub model repo when the run completes, with huggingface_hub (token from `hf auth login` or
HF_TOKEN). A failed upload loses nothing: the run is complete on disk, and running the same command
again uploads it (a completed run only finishes its outputs)."""

from __future__ import annotations

from pathlib import Path

from plumbing.errors import RunFailure


class HubUploadError(RunFailure):
    """The upload to the Hub failed (network, credentials, permissions)."""


def upload_calls(lora_dir: Path, repo_id: str, private: bool, message: str) -> list[tuple[str, dict]]:
    """The HfApi calls that publish the folder: (method name, keyword arguments), in order."""
    return [
        ("create_repo", dict(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)),
        ("upload_folder", dict(repo_id=repo_id, repo_type="model", folder_path=str(lora_dir), commit_message=message)),
    ]


def push_folder(lora_dir: Path, repo_id: str, private: bool, message: str) -> str:
    """Run the upload; the repo's URL. Any failure is one HubUploadError line."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        for method, kwargs in upload_calls(lora_dir, repo_id, private, message):
            getattr(api, method)(**kwargs)
    except Exception as err:  # huggingface_hub raises many kinds (HTTP, offline mode, auth); all end here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HubUploadError(
            f"output.push_to_hub: uploading {lora_dir} to '{repo_id}' failed ({type(err).__name__}: {first[:200]}); "
            "the run is complete on disk: run the same command again to retry the upload"
        ) from None
    return f"https://huggingface.co/{repo_id}"
