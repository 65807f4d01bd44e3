"""Model-parallel ViTs with `keras.distribution`: the layout map
(`ViT.get_layout_map`).

A static method of the model, as keras-hub's Gemma and Llama backbones'
`get_layout_map`, but Megatron-style (Shoeybi et al., 2019), the data axis
splitting only the batch (Gemma's also splits weights over it): each block's
attention splits its heads over the model axis
(query, key and value kernels `(D, heads, D / heads)` on axis 1, the output
kernel `(heads, D / heads, D)` on axis 0) and its MLP splits the hidden units
(the first kernel `(D, mlp)` on its columns, the second `(mlp, D)` on its
rows), so that a block needs one all-reduce after the attention and one after
the MLP. Everything else is replicated: the patch embedding, tokens, position
embeddings, norms, pre-logits and the head (1000 classes are 0.3% of ViT-L/16;
ImageNet-21k's 21,843 classes divide by no even axis size). The batch is split
over the data axis by `keras.distribution.ModelParallel(layout_map=...,
batch_dim_name=...)`.
"""

import keras

BLOCK = r"encoderblock_\d+/"


def layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
    """A `keras.distribution.LayoutMap` that splits every block's attention
    heads and MLP hidden units over `model_parallel_dim_name` of
    `device_mesh` (a `keras.distribution.DeviceMesh` that also has the axis
    `data_parallel_dim_name`, which ModelParallel splits the batch over).

    Keys are regexes on the weights' paths (`encoderblock_{i}/attention/query/kernel`,
    ...), matched whole; weights no key matches are replicated.

    Example, 8 devices as 2 data-parallel groups of 4:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=keras_vit.ViT.get_layout_map(mesh), batch_dim_name="batch"))
    model = keras_vit.ViT.from_preset("vit_l16")  # num_heads and mlp_dim divisible by 4
    ```
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise ValueError(
            f"device_mesh must be a keras.distribution.DeviceMesh, got {type(device_mesh).__name__}."
        )
    for name in (model_parallel_dim_name, data_parallel_dim_name):
        if name not in device_mesh.axis_names:
            raise ValueError(f"The device mesh has axes {device_mesh.axis_names}, not {name!r}.")
    model = model_parallel_dim_name
    layouts = keras.distribution.LayoutMap(device_mesh)
    layouts[BLOCK + "attention/(query|key|value)/kernel"] = (None, model, None)
    layouts[BLOCK + "attention/(query|key|value)/bias"] = (model, None)
    layouts[BLOCK + "attention/attention_output/kernel"] = (model, None, None)
    layouts[BLOCK + "mlp/dense_0/kernel"] = (None, model)
    layouts[BLOCK + "mlp/dense_0/bias"] = (model,)
    layouts[BLOCK + "mlp/dense_1/kernel"] = (model, None)
    return layouts


def axis_size(device_mesh, axis):
    """Devices along the mesh axis `axis` of `device_mesh`; 1 for None (a tensor axis that is not split)."""
    return device_mesh.shape[device_mesh.axis_names.index(axis)] if axis is not None else 1
