"""Run a network of either framework on numpy inputs and return numpy outputs, for comparisons."""
from rare_portable.nets import framework_module

# (backend, MindSpore execution mode) pairs the conformance tests cover.
EVAL_BACKENDS = [("torch", None), ("mindspore", "pynative"), ("mindspore", "graph")]


def set_ms_mode(mode):
    if mode is not None:
        import mindspore as ms
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)


def eval_outputs(net, backend, x):
    infer = framework_module(backend).infer
    feats = infer(net.backbone, x)
    return {"backbone": feats, "neck": infer(net.neck, feats), "probs": infer(net, x)}


def probs(net, backend, x):
    return framework_module(backend).infer(net, x)


def train_outputs(net, backend, x, targets, grad_names):
    """Teacher-forced logits, MindOCR AttentionLoss and the gradients of `grad_names` (MindOCR names)."""
    return TRAIN_OUTPUTS[backend](net, x, targets, grad_names)


def _torch_train_outputs(net, x, targets, grad_names):
    import torch
    from rare_portable.nets.torch_rare import canonical_names
    from rare_portable.train.losses import torch_attention_loss
    t = torch.from_numpy(targets)
    logits = net(torch.from_numpy(x), t)
    loss = torch_attention_loss(logits, t)
    loss.backward()
    key = {canon: k for k, canon in canonical_names(net).items()}
    params = dict(net.named_parameters())
    grads = {n: params[key[n]].grad.numpy() for n in grad_names}
    return logits.detach().numpy(), float(loss), grads


def _mindspore_train_outputs(net, x, targets, grad_names):
    import mindspore as ms
    from rare_portable.train.losses import AttentionLoss
    loss_fn = AttentionLoss()

    def forward(xx, tt):
        out = net(xx, tt)
        return loss_fn(out, tt), out

    params = net.trainable_params()
    (loss, logits), grads = ms.value_and_grad(forward, None, params, has_aux=True)(ms.Tensor(x), ms.Tensor(targets))
    by_name = {p.name: g.asnumpy() for p, g in zip(params, grads)}
    return logits.asnumpy(), float(loss), {n: by_name[n] for n in grad_names}


TRAIN_OUTPUTS = {"torch": _torch_train_outputs, "mindspore": _mindspore_train_outputs}
