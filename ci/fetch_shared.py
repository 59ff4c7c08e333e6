"""Put the shared model files beside the checkout for CI services that do not have them.

    python ci/fetch_shared.py DEST

Does nothing when DEST/models/stories260K.gguf exists. Otherwise downloads the .tar.gz named by
$LLAMACY_SHARED_URL (the project's bundle of shared/: models/ and reference/) and unpacks it.
"""

import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path


def main() -> int:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared").resolve()
    if (dest / "models" / "stories260K.gguf").exists():
        print(f"{dest}: already there")
        return 0
    url = os.environ.get("LLAMACY_SHARED_URL")
    if not url:
        print("LLAMACY_SHARED_URL is not set and the shared files are missing", file=sys.stderr)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "shared.tar.gz"
        urllib.request.urlretrieve(url, archive)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    print(f"{dest}: unpacked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
