"""The README's runnable example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_runnable_example(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    runnable = [block for block in blocks if "A runnable version" in block or "tempfile.mkdtemp()" in block]
    assert len(runnable) == 1, "the README must keep one self-contained python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(runnable[0], "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("24000 ")
    assert (tmp_path / "tiny-pipeline" / "model_index.json").is_file()
