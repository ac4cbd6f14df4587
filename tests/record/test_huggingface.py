"""The Hugging Face TrainerCallback with the real package and a tiny BERT built here (nothing downloaded):
one recorded step per optimizer update under gradient accumulation, recorded values against W(t) @ probes from
weights saved at every update, and a run killed after a checkpoint and resumed equal to an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr


transformers = pytest.importorskip("transformers", reason="needs dyn[hf]")


class _Stop(Exception):
    pass


# -- Hugging Face --------------------------------------------------------------------------------------------------
def _hf_model():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=12, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


class _Tokens(torch.utils.data.Dataset):
    """Label 1 when token 7 occurs; built here, nothing downloaded."""

    def __init__(self, n=16, length=10):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 30, (n, length), generator=g)
        self.labels = (self.ids == 7).any(1).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def _hf(tmp_path, path, out, *, steps, stop_at=None, resume=None):
    from dyn.record.integrations.huggingface import DynTrainerCallback

    model = _hf_model()
    data = _Tokens()
    x = {"input_ids": data.ids, "attention_mask": torch.ones_like(data.ids)}
    cb = DynTrainerCallback(path, ["classifier", "bert.pooler.dense"], x, data.labels, overwrite=resume is None)
    weights = []

    class Snap(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            weights.append(model.classifier.weight.detach().clone())

        def on_step_end(self, args, state, control, model=None, **kw):
            weights.append(model.classifier.weight.detach().clone())
            if stop_at is not None and state.global_step == stop_at:
                raise _Stop()

    args = transformers.TrainingArguments(output_dir=str(out), per_device_train_batch_size=8,
                                          gradient_accumulation_steps=2, max_steps=steps, learning_rate=0.05,
                                          save_steps=3, logging_steps=1, report_to=[], use_cpu=True, seed=0,
                                          dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb, Snap()])
    try:
        trainer.train(resume_from_checkpoint=resume)
    except _Stop:  # the Trainer has no exception hook; a real crash ends the process, which releases the store
        cb.recording.close("interrupted")
    return weights


def test_hugging_face_trainer_records_every_optimizer_step(tmp_path):
    weights = _hf(tmp_path, tmp_path / "hf.zarr", tmp_path / "out", steps=4)
    tree = xr.open_datatree(tmp_path / "hf.zarr", engine="zarr")
    assert tree.attrs["status"] == "complete" and tree["step"].values.tolist() == list(range(5))
    site = tree["classifier"]
    w = torch.stack(weights).double().numpy()
    noise = site["noise_vectors"].values.astype(np.float64)
    np.testing.assert_allclose(site["noise_inner"].values, np.einsum("trd,id->tri", w, noise), rtol=1e-4, atol=1e-5)
    assert site.sizes["sample"] == 16 and tree["bert_pooler_dense"].sizes["sample"] == 16
    assert np.isfinite(tree["loss"].values[:-1]).all()


def test_hugging_face_resumes_from_its_checkpoint(tmp_path):
    _hf(tmp_path, tmp_path / "full.zarr", tmp_path / "out_full", steps=6)
    _hf(tmp_path, tmp_path / "cut.zarr", tmp_path / "out_cut", steps=6, stop_at=5)
    _hf(tmp_path, tmp_path / "cut.zarr", tmp_path / "out_cut", steps=6, resume=str(tmp_path / "out_cut" / "checkpoint-3"))
    full = xr.open_datatree(tmp_path / "full.zarr", engine="zarr")
    resumed = xr.open_datatree(tmp_path / "cut.zarr", engine="zarr")
    assert resumed.attrs["status"] == "complete" and resumed["step"].values.tolist() == list(range(7))
    for var in ("signal_inner", "noise_inner"):
        np.testing.assert_allclose(resumed["classifier"][var].values, full["classifier"][var].values, rtol=1e-4,
                                   atol=1e-5)
