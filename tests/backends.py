"""Run a network of either framework on numpy inputs and return numpy outputs, for comparisons."""
# (backend, MindSpore execution mode) pairs the conformance tests cover.
EVAL_BACKENDS = [("torch", None), ("mindspore", "pynative"), ("mindspore", "graph")]


def set_ms_mode(mode):
    if mode is not None:
        import mindspore as ms
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)


def eval_outputs(net, backend, x):
    if backend == "torch":
        import torch
        with torch.no_grad():
            t = torch.from_numpy(x)
            feats = net.backbone(t)
            return {"backbone": feats.numpy(), "neck": net.neck(feats).numpy(), "probs": net(t).numpy()}
    import mindspore as ms
    t = ms.Tensor(x)
    feats = net.backbone(t)
    return {"backbone": feats.asnumpy(), "neck": net.neck(feats).asnumpy(), "probs": net(t).asnumpy()}


def probs(net, backend, x):
    if backend == "torch":
        import torch
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()
    import mindspore as ms
    return net(ms.Tensor(x)).asnumpy()


def train_outputs(net, backend, x, targets, grad_names):
    """Teacher-forced logits, MindOCR AttentionLoss and the gradients of `grad_names` (MindOCR names)."""
    if backend == "torch":
        import torch
        from rare_portable.nets.torch_rare import attention_loss, canonical_names
        t = torch.from_numpy(targets)
        logits = net(torch.from_numpy(x), t)
        loss = attention_loss(logits, t)
        loss.backward()
        key = {canon: k for k, canon in canonical_names(net).items()}
        params = dict(net.named_parameters())
        grads = {n: params[key[n]].grad.numpy() for n in grad_names}
        return logits.detach().numpy(), float(loss), grads
    import mindspore as ms
    from rare_portable.nets.ms_rare import AttentionLoss
    loss_fn = AttentionLoss()

    def forward(xx, tt):
        out = net(xx, tt)
        return loss_fn(out, tt), out

    params = net.trainable_params()
    (loss, logits), grads = ms.value_and_grad(forward, None, params, has_aux=True)(ms.Tensor(x), ms.Tensor(targets))
    by_name = {p.name: g.asnumpy() for p, g in zip(params, grads)}
    return logits.asnumpy(), float(loss), {n: by_name[n] for n in grad_names}
