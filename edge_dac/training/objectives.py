"""What a micro-batch's loss is: the captioner's (caption, plus event tagging and detection) or the
encoder-pretraining tagger's. Objectives are modules so that DistributedDataParallel can wrap them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_dac.model import Captioner
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.encoder import EventHead
from edge_dac.model.hearing import PATCH_HOP_SECONDS
from edge_dac.training.config import TrainConfig
from edge_dac.training.data import Batch, frame_targets
from edge_dac.training.tagger import EventTagger, multi_hot


def tagging_bce(frame_logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of the clip probabilities (``EventHead``'s pooling of the frame logits)
    against 0/1 ``targets``, summed over the classes and averaged over the clips; and the clip
    probabilities."""
    clip = EventHead.clip_probabilities(frame_logits)
    bce = F.binary_cross_entropy(clip.clamp(1e-6, 1 - 1e-6), targets, reduction="none").sum(-1).mean()
    return bce, clip


class CaptionObjective(nn.Module):
    """The captioner's training loss from log-mels (so features can be masked or cached).

    With an event head (``loss.sed_weight`` / ``loss.tag_weight``), frame-level detection against
    the mixer's event times and clip-level tagging add binary cross-entropies, each summed over the
    classes (a BCE averaged over ~175 classes, ~3 of them present, is ~50x smaller than the caption
    loss and teaches the shared encoder nothing; docs/dac-recipe.md).
    """

    def __init__(self, captioner: Captioner, config: TrainConfig):
        super().__init__()
        self.captioner = captioner
        self.loss_options = config.loss.model_dump(exclude={"tag_weight", "sed_weight"})
        self.sed_weight, self.tag_weight = config.loss.sed_weight, config.loss.tag_weight

    def forward(
        self,
        mel: torch.Tensor,
        tokens: torch.Tensor,
        weights: torch.Tensor,
        codes: torch.Tensor | None = None,
        clip_targets: torch.Tensor | None = None,
        frame_targets: torch.Tensor | None = None,
        heard: torch.Tensor | None = None,
        generator=None,
    ) -> dict:
        features = self.captioner.encoder(mel)
        decoder = self.captioner.decoder
        head = self.captioner.events
        if self.captioner.hearing is None:
            heard = features
        frame_logits = head(heard).float() if head is not None and heard is not None else None
        if isinstance(decoder, DiffusionDecoder):
            # An event-memory denoiser reads the head's probabilities as they are; the caption loss
            # does not move the head (its probabilities keep meaning what the detection loss says).
            events = None
            if decoder.event_proj is not None and frame_logits is not None:
                events = torch.sigmoid(frame_logits).detach()
            losses = dict(vars(decoder.loss(
                tokens, features, weights, generator=generator, codes=codes, events=events, **self.loss_options
            )))
        else:
            losses = dict(vars(decoder.loss(tokens, features)))
        if frame_logits is not None and clip_targets is not None:
            losses["tag_bce"], _ = tagging_bce(frame_logits, clip_targets)
            losses["total"] = losses["total"] + self.tag_weight * losses["tag_bce"]
            if frame_targets is not None:
                bce = F.binary_cross_entropy_with_logits(frame_logits, frame_targets, reduction="none")
                losses["sed_bce"] = bce.sum(-1).mean()
                losses["total"] = losses["total"] + self.sed_weight * losses["sed_bce"]
        return losses

    def inputs(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        captioner = self.captioner
        tokens, weights = captioner.caption_tokens(batch.captions)
        codes = None
        if batch.codes is not None and captioner.dims.wording_codes:
            # A model with fewer codes than caption families shares them (family k -> code k mod codes),
            # as the sampler cycles candidates over its codes.
            codes = torch.tensor(batch.codes) % captioner.dims.wording_codes
        clip = frames = heard = None
        if captioner.events is not None:
            dims = captioner.dims
            classes = dims.event_classes
            clip = multi_hot(batch.labels, list(classes))
            count, seconds = dims.max_encoder_frames, dims.encoder_frame_seconds
            if captioner.hearing is not None and batch.audio is not None:
                with torch.no_grad():  # YAMNet's weights are fixed
                    heard = captioner.hearing(captioner.fit_length(batch.audio.to(device)))
                count, seconds = heard.shape[1], PATCH_HOP_SECONDS
            if batch.events is not None:
                frames = frame_targets(batch.events, classes, count, seconds)
        return tuple(None if x is None else x.to(device) for x in (tokens, weights, codes, clip, frames, heard))


class TaggerObjective(nn.Module):
    """The event tagger's clip-level tagging loss (the caption objective's ``tag_bce``)."""

    def __init__(self, tagger: EventTagger):
        super().__init__()
        self.tagger = tagger

    def forward(self, mel: torch.Tensor, targets: torch.Tensor, generator=None) -> dict:
        bce, clip = tagging_bce(self.tagger(mel).float(), targets)
        accuracy = ((clip > 0.5) == (targets > 0.5)).float().mean()
        return {"total": bce, "bce": bce, "accuracy": accuracy}

    def inputs(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (self.tagger.targets(batch.labels).to(device),)


def make_objective(model: nn.Module, config: TrainConfig) -> CaptionObjective | TaggerObjective:
    """The training loss of a captioner or a tagger."""
    return CaptionObjective(model, config) if isinstance(model, Captioner) else TaggerObjective(model)
