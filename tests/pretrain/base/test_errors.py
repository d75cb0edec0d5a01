"""One error type, one reporter: every CLI's bad input is ``error: <one line>`` on stderr and exit code 2."""
import pytest

from pretrain.base.errors import UserError, report
from reports.errors import ReportError
from transfer.convert import ConvertError


@pytest.mark.parametrize("cls", [ReportError, ConvertError])
def test_package_errors_are_user_errors(cls):
    assert issubclass(cls, UserError)


def test_report_is_one_line_with_exit_2(capsys):
    assert report(UserError("bad\n  multi   line")) == 2
    assert capsys.readouterr().err == "error: bad multi line\n"
    assert report(FileNotFoundError(2, "No such file or directory", "/x/y.csv")) == 2
    assert capsys.readouterr().err == "error: No such file or directory: /x/y.csv\n"
    assert report(TimeoutError("3 run(s) unfinished after 60 s")) == 2
    assert capsys.readouterr().err == "error: 3 run(s) unfinished after 60 s\n"


@pytest.mark.parametrize("argv", [
    ["transfer.launch", "--executor", "local", "--configs", "/nope.yaml", "--weights", "/nope.pth", "--dry-run"],
    ["reports", "--results", "/nope.csv"],
])
def test_clis_share_the_reporter(argv, capsys):
    import importlib
    mod = importlib.import_module(argv[0] + ("" if argv[0].endswith("launch") else ".__main__"))
    assert mod.main(argv[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "/nope" in err
