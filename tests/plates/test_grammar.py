import pytest

from edge_agent.plates.grammar import is_new_energy, normalise_plate


@pytest.mark.parametrize(("raw", "plate"), [
    ("陕K8A3B2", "陕K8A3B2"),
    ("陕K·8A3B2", "陕K8A3B2"),
    ("晋 a-12345", "晋A12345"),
    ("蒙B 1234挂", "蒙B1234挂"),
    ("宁A D12345", "宁AD12345"),  # small new energy
    ("甘A12345F", "甘A12345F"),  # large new energy
    ("豫Ａ１２３４５", "豫A12345"),  # full-width from an IME
    ("粤Z1234港", "粤Z1234港"),
    ("京A1234学", "京A1234学"),
])
def test_valid_plates_normalise(raw: str, plate: str) -> None:
    assert normalise_plate(raw) == plate


@pytest.mark.parametrize("raw", [
    "", "陕", "陕K1234", "陕K123456", "XK12345", "陕112345",  # wrong shapes
    "陕KI2345", "陕KO2345", "陕I12345",  # I and O are never issued
    "陕K12345挂", "挂K12345", "陕K12挂45",  # suffix only in last place of 7
    "陕AZ12345",  # 8 chars but not a new-energy pattern
    "陕K1234?", "陕K 1234 5 6",
])
def test_invalid_plates_return_none(raw: str) -> None:
    assert normalise_plate(raw) is None


def test_new_energy_detection() -> None:
    assert is_new_energy("宁AD12345")
    assert is_new_energy("甘A12345F")
    assert not is_new_energy("陕K8A3B2")


def test_the_grammar_does_not_load_opencv() -> None:
    """The central and the ticket CLI normalise plates; they must not pay OpenCV's import."""
    import subprocess
    import sys

    code = ("import sys, central.plates, edge_agent.plates.grammar; "
            "print(sorted(m for m in ('cv2', 'numpy', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out
