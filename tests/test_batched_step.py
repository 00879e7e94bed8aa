"""A training step without loops over its clips: the per-clip front end, SpecAugment and mixup as batched
operations (the same operator calls at any batch size), their values equal to the per-clip computation, the
compiled student equal to the eager one, and the accelerator's data wait measured."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from eastmir.config import load_config
from eastmir.frontend import FrontendConfig, LogMelFrontend, mel_filterbank, mel_filterbanks
from eastmir.training.augment import jittered_ranges, spec_augment
from eastmir.training.system import EastSystem


def openmic_system(tmp_path, *overrides: str) -> EastSystem:
    """The OpenMIC recipe's EAsT_Final (CP-ResNet, VGGish, the authors' augmentation), narrowed to 16 channels
    and 2 s clips so a step is quick on a CPU (the operators called do not depend on either)."""
    config = load_config(
        "openmic/east_final-vggish", ["student.base_channels=16", "data.clip_seconds=2.0", *overrides], workdir=tmp_path
    )
    torch.manual_seed(0)
    system = EastSystem(config, 20, embedding_dim=128, clip_seconds=2.0, embedding_period=0.96).train()
    system.log = lambda *args, **kwargs: None  # no trainer to log to
    return system


def openmic_batch(n: int, seed: int = 0) -> dict:
    """A batch as the OpenMIC data module serves it: waveforms at 32 kHz, VGGish frames, a partner per clip."""
    g = torch.Generator().manual_seed(seed)

    def clips() -> dict:
        return {
            "waveform": torch.randn(n, 64000, generator=g) * 0.1,
            "embedding": torch.randn(n, 2, 128, generator=g),
            "targets": (torch.rand(n, 20, generator=g) < 0.3).float(),
            "mask": torch.rand(n, 20, generator=g) < 0.5,
            "clip_id": [f"clip{i}" for i in range(n)],
        }

    return dict(clips(), partner=clips())


def aten_calls(system: EastSystem, batch: dict) -> int:
    """``aten::`` operator calls in one training step: forward, losses and backward."""
    system.training_step(dict(batch), 0)  # warm: first-call set-up is not the step
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        system.training_step(dict(batch), 0).backward()
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def test_operator_calls_of_an_openmic_step_do_not_grow_with_the_batch(tmp_path):
    """Per-clip loops (a filterbank and an STFT per clip for the jitter, a mask per clip) made the step's
    operator count grow with the batch (3 126 at batch 4, 5 959 at 16 before); now it is the same."""
    system = openmic_system(tmp_path)
    assert system.authors_augment and system.frontend is not None and system.mixup_alpha > 0
    small, large = aten_calls(system, openmic_batch(4)), aten_calls(system, openmic_batch(16))
    assert large <= 1.10 * small, (small, large)


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_batched_filterbanks_equal_one_filterbank_per_range(scale):
    fmin = torch.tensor([0.0, 13.0, 19.0, 250.0], dtype=torch.float64)
    fmax = torch.tensor([16000.0, 14001.0, 15500.5, 8000.0], dtype=torch.float64)
    banks = mel_filterbanks(1024, 32000, 128, fmin, fmax, scale=scale)
    assert banks.shape == (4, 513, 128) and banks.dtype == torch.float32
    for bank, lo, hi in zip(banks, fmin.tolist(), fmax.tolist()):
        expected = mel_filterbank(1024, 32000, 128, lo, hi, scale=scale)
        assert torch.allclose(bank, expected, atol=1e-6, rtol=0), (lo, hi)


def test_batched_filterbanks_refuse_a_range_outside_nyquist():
    with pytest.raises(ValueError, match=r"0-8000\.0 Hz"):
        mel_filterbanks(512, 16000, 40, torch.tensor([0.0]), torch.tensor([9000.0]))


def test_per_clip_jitter_in_one_call_equals_the_front_end_per_clip():
    """The authors' jitter: each clip through its own range. One batched call gives what a call per clip with
    that clip's filterbank (built by numpy) gives."""
    config = FrontendConfig(
        sample_rate=32000, n_mels=128, fmax=16000.0, preemphasis=0.97, window="symmetric", pad_mode="reflect"
    )
    frontend = LogMelFrontend(config)
    wave = torch.randn(5, 32000, generator=torch.Generator().manual_seed(1)) * 0.3
    lo, hi = jittered_ranges(5, 0.0, 16000.0, 20.0, 2000.0, 16000.0, torch.Generator().manual_seed(2), inward=True)
    batched = frontend(wave, lo, hi)
    for i in range(5):
        one = frontend(wave[i : i + 1], float(lo[i]), float(hi[i]))
        assert torch.allclose(batched[i], one[0], atol=1e-5, rtol=0)
        bank = mel_filterbank(1024, 32000, 128, float(lo[i]), float(hi[i]))
        power = torch.stft(
            wave[i : i + 1, 1:] - 0.97 * wave[i : i + 1, :-1],
            1024,
            320,
            800,
            torch.hann_window(800, periodic=False),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()
        by_hand = (torch.log(torch.einsum("bft,fm->bmt", power**2, bank) + 1e-5) + 3.7) / 3.1
        assert torch.allclose(batched[i], by_hand[0], atol=1e-4, rtol=0)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)  # the ranges differ, so do the log-mels


def test_a_training_step_draws_one_range_per_clip_and_its_partner(tmp_path, monkeypatch):
    system = openmic_system(tmp_path)
    seen = []
    real = system.frontend.forward

    def spy(wave, fmin=None, fmax=None):
        seen.append((wave.shape[0], None if fmin is None else fmin.shape, None if fmax is None else fmax.shape))
        return real(wave, fmin, fmax)

    monkeypatch.setattr(system.frontend, "forward", spy)
    out = system.with_logmel(openmic_batch(6), train=True)
    assert seen == [(12, (12,), (12,))]  # one call: the batch and its partners, a range for each clip
    assert out["logmel"].shape == (6, 128, 200) and out["partner"]["logmel"].shape == (6, 128, 200)
    assert "waveform" not in out and "waveform" not in out["partner"]


def test_spec_augment_masks_one_band_and_one_span_per_clip():
    torch.manual_seed(3)
    x = torch.randn(64, 96, 300).abs() + 1.0  # no zeros of its own
    y = spec_augment(x, freq=48, time=100, fill=0.0)
    assert torch.equal(x[y != 0], y[y != 0])  # what is not masked is untouched
    widths = []
    for sample in y:
        zero = sample == 0
        rows = zero.all(dim=1).nonzero().flatten().tolist()
        columns = zero.all(dim=0).nonzero().flatten().tolist()
        for band, limit in ((rows, 48), (columns, 100)):
            assert len(band) <= limit and band == list(range(band[0], band[0] + len(band))) if band else True
        expected = torch.zeros_like(zero)
        if rows:
            expected[rows] = True
        if columns:
            expected[:, columns] = True
        assert torch.equal(zero, expected)  # nothing else masked
        widths.append((len(rows), len(columns)))
    assert len(set(widths)) > 20  # each clip its own bands


def test_compiled_student_gives_the_eager_losses_and_gradients(tmp_path):
    """``trainer.compile``: the student through torch.compile (here its AOT-autograd graphs without inductor's
    code generation, which takes minutes on a small CPU; the slow test below uses inductor)."""
    compare_compiled(tmp_path, backend="aot_eager")


@pytest.mark.slow
def test_compiled_student_with_inductor_gives_the_eager_losses_and_gradients(tmp_path):
    compare_compiled(tmp_path, backend="inductor")


def compare_compiled(tmp_path, backend: str) -> None:
    """The same system eager and compiled, in float64 so that float rounding cannot hide a real difference (in
    float32 the first layer's gradient differs by about 1e-3 relative after a dozen BatchNorm backward passes
    summed in another order; in float64 the two agree to about 1e-13, i.e. they compute the same thing)."""
    config = load_config(
        "synth/east_final", ["data.clip_seconds=2.0", "student.dropout=0", "trainer.compile=default"], workdir=tmp_path
    )
    torch.manual_seed(0)
    eager = EastSystem(config, 10, embedding_dim=64, clip_seconds=2.0).train().double()
    compiled = copy.deepcopy(eager)
    compiled.compile_student("default", backend=backend)
    g = torch.Generator().manual_seed(1)
    batch = {
        "logmel": torch.randn(8, 96, 201, generator=g, dtype=torch.float64),
        "embedding": torch.randn(8, 1, 64, generator=g, dtype=torch.float64),
        "targets": (torch.rand(8, 10, generator=g) < 0.3).double(),
        "mask": torch.ones(8, 10, dtype=torch.bool),
    }
    a, b = eager.losses(batch), compiled.losses(batch)
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-10, atol=1e-12), key
    a["loss"].backward()
    b["loss"].backward()
    pairs = [
        (p.grad, q.grad)
        for p, q in zip(eager.student.parameters(), compiled.student.parameters())
        if p.grad is not None
    ]
    difference = sum(((x - y) ** 2).sum() for x, y in pairs) ** 0.5
    assert difference <= 1e-9 * sum((x**2).sum() for x, _ in pairs) ** 0.5
    assert list(eager.state_dict()) == list(compiled.state_dict())  # checkpoints load either way


def test_compile_and_cudnn_settings_do_not_block_a_resume(tmp_path):
    """Speed settings: a run started eagerly resumes compiled (they are not part of its fingerprint)."""
    from eastmir.rundir import RunDirectory

    run = RunDirectory.of(tmp_path, "r")
    before = load_config("synth/baseline", ["name=r"], workdir=tmp_path).to_dict()
    run.write_fingerprint(before, "data")
    (run.path / "checkpoints").mkdir()
    (run.path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    after = load_config(
        "synth/baseline",
        ["name=r", "trainer.compile=reduce-overhead", "trainer.cudnn_benchmark=false"],
        workdir=tmp_path,
    ).to_dict()
    run.check_fingerprint(after, "data")  # no error
    with pytest.raises(Exception, match=r"optimizer\.lr"):
        run.check_fingerprint(load_config("synth/baseline", ["name=r", "optimizer.lr=0.5"], workdir=tmp_path).to_dict())


def test_data_wait_share_counts_the_gaps_before_each_step():
    """The callback's arithmetic on the CPU clock: gaps from an epoch's start or a step's end to the next step's
    start, over the time from the epoch's start to its last step's end."""
    from types import SimpleNamespace

    from eastmir.training import trainer as trainer_module

    clock = iter([0.0, 0.3, 1.0, 1.1, 2.0, 2.1])  # epoch, start, end, start, end, (close: not read)
    wait = trainer_module.DataWait()
    fake = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    original = trainer_module.time.perf_counter
    trainer_module.time.perf_counter = lambda: next(clock)
    try:
        wait.on_train_epoch_start(fake, None)
        wait.on_train_batch_start(fake, None, None, 0)
        wait.on_train_batch_end(fake, None)
        wait.on_train_batch_start(fake, None, None, 1)
        wait.on_train_batch_end(fake, None)
        wait.on_train_epoch_end(fake, None)
    finally:
        trainer_module.time.perf_counter = original
    assert wait.share == pytest.approx((0.3 + 0.1) / 2.0)


def test_fit_records_the_data_wait(short_run):
    import json

    metrics = json.loads((short_run / "metrics.json").read_text())
    assert 0.0 <= metrics["data_wait"] < 1.0
    assert np.isfinite(metrics["data_wait"])
