"""SAR head (PaddleOCR ``rec_sar_head.py``): LSTM encoder + parallel 2D-attention LSTM decoder.

In PP-OCRv3 it is the GTC branch of ``MultiHead``: trained with teacher forcing next to the CTC
branch and dropped at inference. Class layout (``out_channels = n``): the dictionary characters,
``<UKN>``, ``<BOS/EOS>`` at ``n - 2`` (one index for start and end) and ``<PAD>`` at ``n - 1``.
The decoder predicts ``n - 1`` classes (never the pad), so the pad index equals the number of
predicted classes.

``targets`` (training, required; eval, optional) is ``[label, ..., valid_ratio]``: ``label`` is the
``[B, L]`` int64 SAR label (``BOS, chars, EOS, PAD...``) and the last item the ``[B]`` valid width
ratios used to pick the encoder's last valid step and to mask attention to padded columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ocr_core.modeling import HEADS

__all__ = ["ParallelSARDecoder", "SAREncoder", "SARHead"]


def _rnn(gru: bool, input_size: int, hidden_size: int, dropout: float, bidirectional: bool) -> nn.Module:
    cls = nn.GRU if gru else nn.LSTM
    return cls(input_size, hidden_size, num_layers=2, batch_first=True, dropout=dropout,
               bidirectional=bidirectional)


def _valid_ratios(img_metas: Sequence[torch.Tensor] | None, batch: int,
                  device: torch.device) -> torch.Tensor | None:
    if img_metas is None:
        return None
    vr = torch.as_tensor(img_metas[-1], device=device, dtype=torch.float32).reshape(-1)
    if vr.numel() != batch:
        raise ValueError(f"valid_ratio has {vr.numel()} entries for a batch of {batch}")
    return vr


class SAREncoder(nn.Module):
    """Max-pool over the height, 2-layer (Bi)LSTM/GRU over the width, Linear on the last valid step."""

    def __init__(self, enc_bi_rnn: bool = False, enc_drop_rnn: float = 0.1, enc_gru: bool = False,
                 d_model: int = 512, d_enc: int = 512, mask: bool = True) -> None:
        super().__init__()
        if not 0 <= enc_drop_rnn < 1.0:
            raise ValueError(f"enc_drop_rnn must be in [0, 1), got {enc_drop_rnn}")
        self.mask = mask
        self.rnn_encoder = _rnn(enc_gru, d_model, d_enc, enc_drop_rnn, enc_bi_rnn)
        out = d_enc * (int(enc_bi_rnn) + 1)
        self.linear = nn.Linear(out, out)

    def forward(self, feat: torch.Tensor, img_metas: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        feat_v = feat.amax(dim=2).transpose(1, 2)  # [B, W, C]
        holistic = self.rnn_encoder(feat_v)[0]  # [B, T, C]
        valid = _valid_ratios(img_metas, feat.shape[0], feat.device) if self.mask else None
        if valid is not None:
            t = holistic.shape[1]
            step = (torch.ceil(valid * t).long().clamp(1, t) - 1).view(-1, 1, 1)
            last = holistic.gather(1, step.expand(-1, 1, holistic.shape[2])).squeeze(1)
        else:
            last = holistic[:, -1, :]
        return self.linear(last)  # [B, C]


class ParallelSARDecoder(nn.Module):
    """2D-attention decoder run in parallel over the teacher-forced sequence (greedy in eval)."""

    def __init__(self, out_channels: int, enc_bi_rnn: bool = False, dec_bi_rnn: bool = False,
                 dec_drop_rnn: float = 0.0, dec_gru: bool = False, d_model: int = 512,
                 d_enc: int = 512, d_k: int = 64, pred_dropout: float = 0.1,
                 max_text_length: int = 30, mask: bool = True, pred_concat: bool = True) -> None:
        super().__init__()
        self.num_classes = out_channels
        self.start_idx = out_channels - 2
        self.padding_idx = out_channels - 1
        self.max_seq_len = max_text_length
        self.mask = mask
        self.pred_concat = pred_concat
        enc_out = d_enc * (int(enc_bi_rnn) + 1)
        dec_out = enc_out * (int(dec_bi_rnn) + 1)
        # Creation order follows PaddleOCR (its state_dict order).
        self.conv1x1_1 = nn.Linear(dec_out, d_k)
        self.conv3x3_1 = nn.Conv2d(d_model, d_k, kernel_size=3, stride=1, padding=1)
        self.conv1x1_2 = nn.Linear(d_k, 1)
        self.rnn_decoder = _rnn(dec_gru, enc_out, enc_out, dec_drop_rnn, dec_bi_rnn)
        self.embedding = nn.Embedding(out_channels, enc_out, padding_idx=self.padding_idx)
        self.pred_dropout = nn.Dropout(pred_dropout)
        fc_in = dec_out + d_model + enc_out if pred_concat else d_model
        self.prediction = nn.Linear(fc_in, out_channels - 1)

    def _2d_attention(self, decoder_input: torch.Tensor, feat: torch.Tensor, holistic: torch.Tensor,
                      valid_ratios: torch.Tensor | None, train_mode: bool) -> torch.Tensor:
        y = self.rnn_decoder(decoder_input)[0]  # [B, T, dec_out]
        query = self.conv1x1_1(y)[:, :, :, None, None]  # [B, T, d_k, 1, 1]
        key = self.conv3x3_1(feat).unsqueeze(1)  # [B, 1, d_k, h, w]
        energy = torch.tanh(key + query).permute(0, 1, 3, 4, 2)  # [B, T, h, w, d_k]
        score = self.conv1x1_2(energy).squeeze(-1)  # [B, T, h, w]
        b, t, h, w = score.shape
        if valid_ratios is not None:
            valid_w = torch.ceil(valid_ratios * w).long().clamp(1, w)  # >= 1 column stays visible
            cols = torch.arange(w, device=score.device)
            pad = cols[None, :] >= valid_w[:, None]  # [B, w]
            score = score.masked_fill(pad[:, None, None, :], float("-inf"))
        attn = score.reshape(b, t, h * w).softmax(dim=-1).reshape(b, t, h, w)
        attn_feat = torch.einsum("bthw,bchw->btc", attn, feat.to(attn.dtype))  # [B, T, C]
        if self.pred_concat:
            hf = holistic.expand(b, t, holistic.shape[-1])
            out = self.prediction(torch.cat((y, attn_feat.to(y.dtype), hf.to(y.dtype)), dim=2))
        else:
            out = self.prediction(attn_feat)
        if train_mode:
            out = self.pred_dropout(out)
        return out

    def forward_train(self, feat: torch.Tensor, out_enc: torch.Tensor, label: torch.Tensor,
                      img_metas: Sequence[torch.Tensor] | None) -> torch.Tensor:
        valid = _valid_ratios(img_metas, feat.shape[0], feat.device) if self.mask else None
        emb = self.embedding(label.long())  # [B, L, E]
        holistic = out_enc.unsqueeze(1).to(emb.dtype)  # [B, 1, E]
        dec_in = torch.cat((holistic, emb), dim=1)  # [B, L + 1, E]
        return self._2d_attention(dec_in, feat, holistic, valid, train_mode=True)[:, 1:, :]

    def forward_test(self, feat: torch.Tensor, out_enc: torch.Tensor,
                     img_metas: Sequence[torch.Tensor] | None) -> torch.Tensor:
        valid = _valid_ratios(img_metas, feat.shape[0], feat.device) if self.mask else None
        b, seq_len = feat.shape[0], self.max_seq_len
        start = torch.full((b,), self.start_idx, dtype=torch.long, device=feat.device)
        start_emb = self.embedding(start).unsqueeze(1).expand(b, seq_len, -1)
        holistic = out_enc.unsqueeze(1).to(start_emb.dtype)
        dec_in = torch.cat((holistic, start_emb), dim=1)
        outputs = []
        for i in range(1, seq_len + 1):
            probs = self._2d_attention(dec_in, feat, holistic, valid, train_mode=False)[:, i, :].softmax(-1)
            outputs.append(probs)
            if i < seq_len:
                dec_in = dec_in.clone()
                dec_in[:, i + 1, :] = self.embedding(probs.argmax(dim=1))
        return torch.stack(outputs, dim=1)  # [B, L, n - 1]

    def forward(self, feat: torch.Tensor, out_enc: torch.Tensor, label: torch.Tensor | None = None,
                img_metas: Sequence[torch.Tensor] | None = None, train_mode: bool = True) -> torch.Tensor:
        if train_mode:
            if label is None:
                raise ValueError("SAR decoder training needs the label")
            return self.forward_train(feat, out_enc, label, img_metas)
        return self.forward_test(feat, out_enc, img_metas)


@HEADS.register()
class SARHead(nn.Module):
    """Show-Attend-Read head.

    Args:
        in_channels: Backbone channels (wired).
        out_channels: SAR classes incl. ``<UKN>``, ``<BOS/EOS>``, ``<PAD>`` (wired; ``n_ctc + 2``
            in a MultiHead).
        enc_dim: Encoder LSTM width. max_text_length: decoding steps in eval.
        enc_bi_rnn, enc_drop_rnn, enc_gru, dec_bi_rnn, dec_drop_rnn, dec_gru, d_k, pred_dropout,
        pred_concat: as in PaddleOCR.

    Returns (``forward``): training, ``{"sar": logits [B, L, n - 1]}`` for the teacher-forced label
    of length ``L``; eval, ``{"sar": probabilities [B, max_text_length, n - 1]}``.
    """

    def __init__(self, in_channels: int, out_channels: int, enc_dim: int = 512, max_text_length: int = 25,
                 enc_bi_rnn: bool = False, enc_drop_rnn: float = 0.1, enc_gru: bool = False,
                 dec_bi_rnn: bool = False, dec_drop_rnn: float = 0.0, dec_gru: bool = False,
                 d_k: int = 512, pred_dropout: float = 0.1, pred_concat: bool = True) -> None:
        super().__init__()
        self.encoder = SAREncoder(enc_bi_rnn=enc_bi_rnn, enc_drop_rnn=enc_drop_rnn, enc_gru=enc_gru,
                                  d_model=in_channels, d_enc=enc_dim)
        self.decoder = ParallelSARDecoder(
            out_channels, enc_bi_rnn=enc_bi_rnn, dec_bi_rnn=dec_bi_rnn, dec_drop_rnn=dec_drop_rnn,
            dec_gru=dec_gru, d_model=in_channels, d_enc=enc_dim, d_k=d_k, pred_dropout=pred_dropout,
            max_text_length=max_text_length, pred_concat=pred_concat)

    def forward(self, feat: torch.Tensor,
                targets: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        holistic = self.encoder(feat, targets)
        if self.training:
            if not targets:
                raise ValueError("SARHead needs targets [label_sar, ..., valid_ratio] in training")
            return {"sar": self.decoder(feat, holistic, targets[0], img_metas=targets)}
        return {"sar": self.decoder(feat, holistic, None, img_metas=targets, train_mode=False)}
