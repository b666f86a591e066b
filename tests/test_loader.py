import torch
import torchvision.transforms.v2.functional as TF

from ltlib.data.augment import normalize, pad_crop_flip
from ltlib.data.loader import DeviceLoader, epoch_generator
from ltlib.data.sources import ImageSet


def _images(n=16, c=3, h=8, w=8):
    return torch.randint(1, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))


def test_pad_crop_flip_matches_torchvision_per_image():
    """The single gather equals torchvision's pad -> crop -> (flip) per image, for the same draws."""
    images, padding = _images(), 4
    gen = torch.Generator().manual_seed(3)
    out = pad_crop_flip(images, padding, True, gen)
    # replay the draws in the order pad_crop_flip makes them
    gen = torch.Generator().manual_seed(3)
    b = len(images)
    top = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen)
    left = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen)
    flip = torch.rand((b, 1), generator=gen) < 0.5
    for i in range(b):
        ref = TF.pad(images[i], [padding], fill=0)
        ref = TF.crop(ref, int(top[i]), int(left[i]), 8, 8)
        if flip[i]:
            ref = TF.horizontal_flip(ref)
        assert torch.equal(out[i], ref)
    assert flip.any() and (~flip).any()


def test_pad_crop_flip_shapes_and_zero_fill():
    images = torch.full((64, 1, 6, 6), 255, dtype=torch.uint8)
    out = pad_crop_flip(images, 2, False, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert (out == 0).any() and (out == 255).any()          # some crops reach into the zero padding
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_no_padding_no_flip_is_identity():
    images = _images()
    assert torch.equal(pad_crop_flip(images, 0, False, torch.Generator()), images)


def test_normalize():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out = normalize(x, torch.tensor(0.5).view(1, 1, 1, 1), torch.tensor(0.25).view(1, 1, 1, 1), False)
    assert torch.allclose(out, torch.tensor([[[[-2.0, 2.0]]]]))


def _loader(n=50, batch_size=16, **kw):
    data = ImageSet(_images(n, 1, 8, 8), torch.arange(n) % 5, tuple("abcde"))
    return DeviceLoader(data, batch_size=batch_size, mean=(0.5,), std=(0.25,), **kw)


def test_epoch_visits_every_image_once_and_keeps_last_batch():
    loader = _loader(padding=0, seed=0)
    assert len(loader) == 4
    batches = list(loader.epoch(0))
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    images = torch.cat([x for x, _ in batches])
    # every image appears once: match normalised pixels back to the source rows
    src = normalize(loader.images, loader.mean, loader.std, False).flatten(1)
    got = images.flatten(1)
    matches = (got[:, None, :] == src[None, :, :]).all(-1).float().argmax(1)
    assert sorted(matches.tolist()) == list(range(50))
    assert torch.equal(torch.cat([y for _, y in batches]), loader.labels[matches])


def test_drop_last():
    loader = _loader(drop_last=True)
    assert len(loader) == 3 and all(len(y) == 16 for _, y in loader.epoch(0))


def test_epochs_are_reproducible_and_distinct():
    a, b = _loader(padding=2, flip=True, seed=1), _loader(padding=2, flip=True, seed=1)
    for (xa, ya), (xb, yb) in zip(a.epoch(3), b.epoch(3)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = torch.cat([y for _, y in a.epoch(0)])
    assert not torch.equal(first, torch.cat([y for _, y in a.epoch(1)]))
    other_seed = torch.cat([y for _, y in _loader(seed=2).epoch(0)])
    assert not torch.equal(first, other_seed)


def test_order_does_not_depend_on_augmentation():
    """Data order and augmentation draw from separate streams."""
    plain = torch.cat([y for _, y in _loader(seed=4).epoch(2)])
    augmented = torch.cat([y for _, y in _loader(seed=4, padding=2, flip=True).epoch(2)])
    assert torch.equal(plain, augmented)


def test_epoch_generator_streams_differ():
    g = [epoch_generator(0, 0, s, torch.device("cpu")).initial_seed() for s in (0, 1)]
    assert g[0] != g[1]
    assert epoch_generator(0, 5, 0, torch.device("cpu")).initial_seed() == epoch_generator(0, 5, 0, torch.device("cpu")).initial_seed()


def test_channels_last_output():
    x, _ = next(_loader(channels_last=True, padding=2).epoch(0))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
    x, _ = next(_loader(channels_last=False, padding=2).epoch(0))
    assert x.is_contiguous()
