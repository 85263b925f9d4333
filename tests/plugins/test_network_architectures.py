"""The EDM architectures beyond the reference networks: naming and formulas (docs/edm-networks.md), fp16 switch."""

from __future__ import annotations

import pytest
import torch

from pspc_network import build_network
from pspc_network.layers import Conv2d, PositionalEmbedding, resample_filter_2d
from pspc_network.unet_block import UNetBlock


def net_of(class_name: str, **kwargs):
    base = dict(img_resolution=16, img_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                attn_resolutions=[8])
    return build_network({"class_name": class_name, "init_kwargs": {**base, **kwargs}}).eval()


def test_ncsnpp_keys_and_filters():
    net = net_of("VEPrecond", embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
                 resample_filter=[1, 3, 3, 1])
    sd = net.state_dict()
    assert sd["model.map_noise.freqs"].shape == (16,)  # N/2 with N = 16·2
    assert sd["model.enc.8x8_aux_residual.weight"].shape == (16, 3, 3, 3)  # caux = image channels at level 1
    f = sd["model.enc.8x8_aux_residual.resample_filter"]
    assert f.shape == (1, 1, 4, 4) and torch.allclose(f[0, 0], torch.outer(*[torch.tensor([1, 3, 3, 1.0]) / 8] * 2))
    assert "model.dec.16x16_aux_conv.weight" in sd and not any("out_conv" in k for k in sd)
    assert sd["model.enc.16x16_conv.weight"].shape == (16, 3, 3, 3)  # Cm, not Cm·mult[0]


def test_skip_encoder_and_decoder_keys():
    sd = net_of("VPPrecond", encoder_type="skip", decoder_type="skip").state_dict()
    assert [k for k in sd if "aux_down" in k] == ["model.enc.8x8_aux_down.resample_filter"]
    assert sd["model.enc.8x8_aux_skip.weight"].shape == (16, 3, 1, 1)
    assert [k for k in sd if "aux_up" in k] == ["model.dec.16x16_aux_up.resample_filter"]
    assert {"model.dec.8x8_aux_norm.weight", "model.dec.8x8_aux_conv.weight"} <= set(sd)


def test_songunet_block_layout_and_attention_placement():
    sd = net_of("EDMPrecond", model_type="SongUNet", label_dim=5, augment_dim=9).state_dict()
    keys = list(sd)
    assert keys[:3] == ["model.map_label.weight", "model.map_label.bias", "model.map_augment.weight"]
    assert "model.map_augment.bias" not in sd
    assert "model.enc.8x8_down.conv0.resample_filter" in sd and "model.enc.8x8_down.skip.weight" in sd
    assert "model.enc.8x8_block0.qkv.weight" in sd and "model.enc.16x16_block0.qkv.weight" not in sd
    assert "model.dec.8x8_block1.qkv.weight" in sd and "model.dec.8x8_block0.qkv.weight" not in sd
    assert "model.dec.8x8_in0.qkv.weight" in sd and "model.dec.8x8_in1.qkv.weight" not in sd
    block = [k.split(".")[3] for k in keys if k.startswith("model.enc.8x8_down.")]
    assert list(dict.fromkeys(block)) == ["norm0", "conv0", "affine", "norm1", "conv1", "skip"]


def test_adm_heads_labels_and_skips():
    net = net_of("EDMPrecond", model_type="DhariwalUNet", model_channels=32, label_dim=10, attn_resolutions=[16, 8])
    sd = net.state_dict()
    keys = list(sd)
    assert keys.index("model.map_label.weight") > keys.index("model.map_layer1.bias")
    assert "model.map_label.bias" not in sd
    assert "model.enc.16x16_block0.qkv.weight" not in sd  # 32 channels: 32 // 64 = 0 heads
    assert net.model.enc["8x8_block0"].num_heads == 1 and net.model.dec["8x8_in0"].num_heads == 1
    assert [k for k in sd if k.startswith("model.enc.8x8_down.skip")] == ["model.enc.8x8_down.skip.resample_filter"]
    assert sd["model.enc.8x8_down.affine.weight"].shape == (2 * 32, 4 * 32)  # scale and shift
    assert sd["model.out_conv.weight"].shape == (3, 32, 3, 3)


def test_iddpm_has_twice_the_outputs_and_u_first():
    net = net_of("iDDPMPrecond", model_channels=32)
    sd = net.state_dict()
    assert list(sd)[0] == "u" and sd["u"].shape == (1001,)
    assert sd["model.out_conv.weight"].shape[0] == 6
    u = net.u
    assert u[-1] == 0 and bool((u[:-1] > u[1:]).all())
    assert net.sigma_min == float(u[999]) and net.sigma_max == float(u[0])


def test_vp_supported_range():
    net = net_of("VPPrecond")
    assert net.sigma_min == pytest.approx(0.0009765625, rel=1e-6)
    assert net.sigma_max == pytest.approx(152.167, rel=1e-5)


class Probe(torch.nn.Module):
    """Stands in for F: records what the preconditioner passes and returns a constant."""

    def __init__(self, channels: int, value: float = 1.0):
        super().__init__()
        self.channels, self.value = channels, value

    def forward(self, x, noise_labels, class_labels=None, **kwargs):
        self.x, self.noise_labels, self.class_labels, self.kwargs = x, noise_labels, class_labels, kwargs
        out = torch.full((x.shape[0], self.channels, *x.shape[2:]), self.value, dtype=x.dtype)
        out[:, x.shape[1]:] = 1e6  # iDDPM's variance channels must be ignored
        return out


@pytest.mark.parametrize("class_name", ["EDMPrecond", "VPPrecond", "VEPrecond", "iDDPMPrecond"])
def test_preconditioner_formulas(class_name):
    net = net_of(class_name, model_type="SongUNet", model_channels=8, channel_mult=[1], label_dim=0)
    net.model = Probe(6 if class_name == "iDDPMPrecond" else 3)
    sigma = torch.tensor([0.002, 0.5, 2.0, 80.0], dtype=torch.float64)
    x = torch.full((4, 3, 2, 2), 0.25)
    D = net(x, sigma, augment_labels=torch.zeros(4, 9)).double()
    sigma = sigma.float()  # the official code evaluates these in float32 (VP's c_noise at σ = 0.002 shows it)
    s = sigma.reshape(-1, 1, 1, 1)
    c_in = net.model.x.double() / x.double()
    if class_name == "EDMPrecond":
        want = (0.25 / (s ** 2 + 0.25), s * 0.5 / (s ** 2 + 0.25).sqrt(), 1 / (s ** 2 + 0.25).sqrt(), sigma.log() / 4)
    elif class_name == "VPPrecond":
        t = ((0.1 ** 2 + 2 * 19.9 * (1 + sigma ** 2).log()).sqrt() - 0.1) / 19.9
        want = (1.0, -s, 1 / (s ** 2 + 1).sqrt(), 999 * t)
    elif class_name == "VEPrecond":
        want = (1.0, s, torch.ones_like(s), (sigma / 2).log())
    else:
        j = (sigma[:, None] - net.u[None]).abs().argmin(1)
        want = (1.0, -s, 1 / (s ** 2 + 1).sqrt(), 999.0 - j.float())
        assert j[0] == 1000 and want[3][0] == -1  # σ = 0.002 lies below u_999: c_noise = -1
    c_skip, c_out, c_in_want, c_noise = want
    assert torch.allclose(D, (c_skip * 0.25 + c_out * 1.0).double(), rtol=1e-5, atol=1e-6)
    assert torch.allclose(c_in, c_in_want.expand_as(c_in).double(), rtol=1e-5)
    assert torch.allclose(net.model.noise_labels, c_noise.float(), rtol=1e-5, atol=1e-5)
    assert net.model.noise_labels.shape == (4,) and "augment_labels" in net.model.kwargs


def test_labels_none_is_a_zero_row_and_labels_are_reshaped():
    net = net_of("EDMPrecond", model_type="SongUNet", label_dim=4)
    net.model = Probe(3)
    net(torch.zeros(2, 3, 2, 2), torch.ones(2))
    assert torch.equal(net.model.class_labels, torch.zeros(1, 4))
    net(torch.zeros(2, 3, 2, 2), torch.ones(2), class_labels=torch.eye(4)[:2].flatten())
    assert net.model.class_labels.shape == (2, 4)


def test_positional_embedding_frequencies():
    c = torch.tensor([0.3, -1.5])
    for endpoint, e in ((True, 1), (False, 0)):
        emb = PositionalEmbedding(8, endpoint=endpoint)(c)
        f = torch.tensor([(1 / 10000) ** (k / (4 - e)) for k in range(4)])
        assert torch.allclose(emb, torch.cat([torch.cos(c[:, None] * f), torch.sin(c[:, None] * f)], 1), atol=1e-6)


def test_attention_uses_interleaved_qkv_channels():
    torch.manual_seed(0)
    block = UNetBlock(8, 8, emb_channels=4, attention=True, num_heads=2, adaptive_scale=False).eval()
    for p in block.parameters():
        p.data.normal_()
    x, emb = torch.randn(1, 8, 3, 3), torch.randn(1, 4)
    block.num_heads = 0
    h = block(x, emb)  # the residual part alone
    block.num_heads = 2
    qkv = block.qkv(block.norm2(h))[0].reshape(24, 9)
    heads = []
    for head in range(2):
        rows = lambda r: qkv[[head * 12 + 3 * i + r for i in range(4)]]  # noqa: E731
        q, k, v = rows(0), rows(1), rows(2)
        w = torch.softmax(q.T @ k / 2.0, dim=1)  # [query, key], √(C/heads) = 2
        heads.append(v @ w.T)
    a = torch.cat(heads).reshape(1, 8, 3, 3)
    assert torch.allclose(block(x, emb), block.proj(a) + h, atol=1e-5)


def test_resampling_preserves_constants():
    x = torch.ones(1, 2, 8, 8)
    for taps in ([1, 1], [1, 3, 3, 1]):
        down = Conv2d(2, 2, kernel=0, down=True, resample_filter=taps)(x)
        up = Conv2d(2, 2, kernel=0, up=True, resample_filter=taps)(x)
        assert down.shape == (1, 2, 4, 4) and up.shape == (1, 2, 16, 16)
        assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1)) and torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1))
    assert torch.allclose(resample_filter_2d([1, 1]), torch.full((1, 1, 2, 2), 0.25))


def test_fp16_only_on_cuda_and_switchable():
    from pspc_network.denoiser import NetworkDenoiser

    net = net_of("EDMPrecond", model_type="SongUNet", use_fp16=True)
    assert not NetworkDenoiser(network=net).use_fp16  # CPU: float32 whatever the checkpoint asks
    if torch.cuda.is_available():
        assert NetworkDenoiser(network=net).to("cuda").use_fp16
        assert not NetworkDenoiser(network=net, force_fp32=True).to("cuda").use_fp16
        x = torch.randn(2, 3, 16, 16, device="cuda")
        assert net(x, torch.ones(2, device="cuda")).dtype == torch.float32


def test_class_label_settings():
    from pspc_core.errors import ParameterError
    from pspc_network.denoiser import NetworkDenoiser

    cond = net_of("EDMPrecond", model_type="SongUNet", label_dim=10)
    random = NetworkDenoiser(network=cond, class_label="random", label_seed=3)
    first = random.class_labels(6)
    assert torch.equal(first, random.class_labels(6)) and first.sum(1).eq(1).all()  # same labels every call
    assert NetworkDenoiser(network=cond, class_label="none").class_labels(2) is None
    assert NetworkDenoiser(network=cond, class_label="4").class_labels(2).argmax(1).tolist() == [4, 4]
    with pytest.raises(ParameterError, match="out of range"):
        NetworkDenoiser(network=cond, class_label="10")
    uncond = net_of("EDMPrecond", model_type="SongUNet")
    assert NetworkDenoiser(network=uncond).class_labels(2) is None  # 'random' means nothing without classes
    with pytest.raises(ParameterError, match="unconditional"):
        NetworkDenoiser(network=uncond, class_label="3")
