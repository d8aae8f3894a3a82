"""The ROI modules under torch.fx (a leaf, as torchvision's ops are) and torch.jit.script."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from lidplug.ops import RoIPerceptualLoss, RoIPyramidAlign, extension_available

FEATURES = [torch.rand(2, 4, 16, 16), torch.rand(2, 4, 8, 8)]
BOXES = [torch.tensor([[1.0, 2.0, 30.0, 40.0]]), torch.tensor([[5.0, 5.0, 20.0, 20.0]])]


class Net(nn.Module):
    """A backbone and a pooling head: what feature extraction tools trace."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = RoIPyramidAlign(7, 0.25)
        self.loss = RoIPerceptualLoss(7, 0.25)

    def forward(self, x, reference, boxes):
        y = nn.functional.avg_pool2d(self.conv(x), 4)
        return self.pool(y, boxes), self.loss(y, nn.functional.avg_pool2d(reference, 4), boxes)


def test_fx_traces_a_model_holding_the_modules():
    torch.manual_seed(0)
    net = Net()
    graph = torch.fx.symbolic_trace(net)
    calls = {n.target.__name__ for n in graph.graph.nodes if n.op == "call_function"
             and hasattr(n.target, "__name__")}
    assert {"roi_pool", "roi_perceptual_loss"} <= calls  # leaves, not traced into
    x, ref = torch.rand(1, 1, 64, 64), torch.rand(1, 4, 64, 64)
    boxes = torch.tensor([[0.0, 2.0, 2.0, 40.0, 40.0]])
    for a, b in zip(graph(x, ref, boxes), net(x, ref, boxes), strict=True):
        torch.testing.assert_close(a, b)
    from torchvision.models.feature_extraction import create_feature_extractor

    out = create_feature_extractor(net, return_nodes=["conv", "pool"])(x, ref, boxes)
    assert out["pool"].shape == (1, 4, 7, 7)


@pytest.mark.skipif(not extension_available(), reason="scripting calls the compiled ops")
@pytest.mark.parametrize("features", [FEATURES, OrderedDict(p2=FEATURES[0], p3=FEATURES[1])],
                         ids=["list", "dict"])
def test_the_modules_script_and_match_eager(features):
    pool, loss = RoIPyramidAlign(7, [0.25, 0.125]), RoIPerceptualLoss(5, [0.25, 0.125])
    reference = [f + 0.1 for f in FEATURES]
    torch.testing.assert_close(torch.jit.script(pool)(features, BOXES), pool(features, BOXES),
                               rtol=0, atol=0)
    torch.testing.assert_close(torch.jit.script(loss)(features, reference, BOXES),
                               loss(features, reference, BOXES), rtol=0, atol=0)
    inferred = RoIPyramidAlign(7)  # scales from the image size, as MultiScaleRoIAlign
    torch.testing.assert_close(torch.jit.script(inferred)(features, BOXES, (64, 64)),
                               pool(features, BOXES), rtol=0, atol=0)
    one = RoIPyramidAlign(7, 0.25)  # one map, boxes as Tensor[K, 5]
    rois = torch.tensor([[1.0, 5.0, 5.0, 20.0, 20.0]])
    torch.testing.assert_close(torch.jit.script(one)(FEATURES[0], rois), one(FEATURES[0], rois),
                               rtol=0, atol=0)
    with pytest.raises(Exception, match="expected one scale per level"):  # the op's own check
        torch.jit.script(pool)(FEATURES[0], rois)
