"""LineFile: lines noted once, read back by number from an open descriptor."""

import pytest

from kbsearch.fileio import LineFile


def test_lines_are_read_back_by_number_and_in_runs(tmp_path):
    path = tmp_path / "lines.jsonl"
    path.write_bytes("\n{\"a\": 1}\n\n  \n{\"ä\": 2}\n{\"b\": 3}".encode())
    lines = LineFile(path)
    assert list(lines.scan()) == [b'{"a": 1}\n', '{"ä": 2}\n'.encode(), b'{"b": 3}']
    assert len(lines) == 3
    assert lines.read(1) == '{"ä": 2}\n'.encode() and lines.read(2) == b'{"b": 3}'
    assert lines.read(1, 3) == '{"ä": 2}\n{"b": 3}'.encode()
    assert lines.read(0, 2) == '{"a": 1}\n\n  \n{"ä": 2}\n'.encode()  # blank ones between
    assert lines.read(2, 2) == b""
    path.unlink()  # a build pruned while it is read
    assert lines.read(0) == b'{"a": 1}\n'
    lines.close()
    with pytest.raises(ValueError, match="closed"):
        lines.read(0)
    lines.close()  # twice is no error


def test_a_dropped_line_file_closes_its_descriptor(tmp_path):
    import os

    path = tmp_path / "x"
    path.write_text("x\n")

    def open_on_path() -> int:
        """Descriptors of this process open on ``path`` (others may close meanwhile)."""
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
            except OSError:  # closed while listed
                pass
        return count

    files = [LineFile(path) for _ in range(20)]
    assert open_on_path() == 20
    del files
    assert open_on_path() == 0
