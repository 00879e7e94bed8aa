import numpy as np
import pytest
import soundfile as sf
import torch

from eastmir.audio import AudioDecodeError, load_audio
from eastmir.frontend import FrontendConfig, LogMelFrontend, hz_to_mel, mel_filterbank, mel_to_hz


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_scale_round_trip(scale):
    f = np.array([0.0, 100.0, 999.0, 1000.0, 4000.0, 16000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(f, scale), scale), f)


def test_htk_mel_known_value():
    assert float(hz_to_mel(1000.0, "htk")) == pytest.approx(999.9855, abs=1e-3)


def test_filterbank_unit_sum_and_triangle_peaks():
    fb = mel_filterbank(2048, 44100, 96, 0.0, 22050.0, scale="htk", triangles="mel", norm="unit_sum")
    assert fb.shape == (1025, 96)
    assert torch.allclose(fb.sum(0), torch.ones(96), atol=1e-5)
    # each band peaks at the FFT bin nearest its centre frequency
    centres = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(22050), 98)[1:-1])
    bins = np.linspace(0, 22050, 1025)
    for m in (10, 50, 90):
        nearest = np.abs(bins - centres[m]).argmin()
        assert abs(int(fb[:, m].argmax()) - nearest) <= 1


def test_filterbank_rejects_range_above_nyquist():
    with pytest.raises(ValueError, match="mel range"):
        mel_filterbank(1024, 16000, 96, 0, 9000)


def test_frontend_shape_and_no_persistent_buffers():
    cfg = FrontendConfig()
    module = LogMelFrontend(cfg)
    out = module(torch.randn(2, 16000))
    assert out.shape == (2, 96, cfg.n_frames(16000)) == (2, 96, 51)
    assert module.state_dict() == {}  # filterbank never stored in checkpoints


def test_frontend_cache_key_follows_settings():
    assert FrontendConfig().cache_key() == FrontendConfig().cache_key()
    assert FrontendConfig(n_mels=128).cache_key() != FrontendConfig().cache_key()


def test_frontend_tone_lands_in_right_band():
    cfg = FrontendConfig()
    t = np.arange(16000) / 16000
    tone = torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    spec = LogMelFrontend(cfg)(tone[None])[0]
    centres = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(8000), 98)[1:-1])
    assert abs(int(spec.mean(1).argmax()) - int(np.abs(centres - 1000).argmin())) <= 1


def test_load_real_openmic_ogg_resampled(data_dir):
    audio = load_audio(data_dir / "openmic" / "000046_3840.ogg", 32000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 320000) <= 32  # a 10 s clip
    assert np.abs(audio).max() > 0.01


def test_corrupt_file_error_names_it(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioDecodeError, match=r"corrupt\.wav"):
        load_audio(bad, 16000)


def test_empty_file_error_names_it(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioDecodeError, match=r"empty\.wav.*no audio samples"):
        load_audio(empty, 16000)


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(AudioDecodeError, match=r"nothere\.ogg.*not found"):
        load_audio(tmp_path / "nothere.ogg", 16000)


@pytest.mark.parametrize(
    "options",
    [
        {},  # synth / OpenMIC-like defaults: n_fft 1024 = 32 · 32, an 800-sample window centred in the frame
        {"preemphasis": 0.97, "window": "symmetric", "pad_mode": "reflect", "mel_scale": "slaney"},  # the authors'
        {"n_fft": 512, "win_length": 512, "hop_length": 256, "n_mels": 128},  # 16 · 32, short-chunk CNN's
        {"n_fft": 600, "win_length": 600, "hop_length": 160, "n_mels": 40},  # 20 · 30, not a power of two
    ],
)
def test_the_matmul_spectrum_for_onnx_equals_torch_stft(options):
    from eastmir.frontend import MatmulPowerSpectrum

    config = FrontendConfig(**options)
    exact, by_products = LogMelFrontend(config), LogMelFrontend(config).for_onnx()
    assert isinstance(by_products.matmul_spectrum, MatmulPowerSpectrum)
    generator = torch.Generator().manual_seed(0)
    for length in (config.win_length, 12_345, 80_000):  # the shortest input, an odd one, several seconds
        wave = torch.randn(2, length, generator=generator) * 0.1
        wave[1] *= torch.linspace(0, 1, length)  # a fade from silence: small powers near log_eps too
        a, b = exact(wave), by_products(wave)
        assert a.shape == b.shape == (2, config.n_mels, config.n_frames(length))
        assert float((a - b).abs().max()) < 1e-4  # float rounding of a different summation order, no more
    spectrum = by_products.matmul_spectrum
    padded = torch.nn.functional.pad(torch.randn(1, 4000, generator=generator), (config.n_fft // 2,) * 2)
    window = torch.zeros(config.n_fft)
    offset = (config.n_fft - config.win_length) // 2
    window[offset : offset + config.win_length] = exact.window
    frames = padded.unfold(-1, config.n_fft, config.hop_length) * window  # (1, frames, n_fft)
    numpy_power = np.abs(np.fft.rfft(frames.double().numpy(), axis=-1)) ** 2  # numpy's FFT, float64
    assert np.allclose(spectrum(padded)[0].numpy().T, numpy_power[0], rtol=1e-4, atol=1e-6 * numpy_power.max())
