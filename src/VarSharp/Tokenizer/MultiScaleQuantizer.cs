using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Config;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Tokenizer;

/// <summary>What <see cref="MultiScaleQuantizer.Quantize"/> returns per scale (lists indexed by scale).</summary>
public sealed class QuantizeResult : IDisposable
{
    /// <summary>Token indices (B, pn²), row-major over (h, w).</summary>
    public List<Tensor> Indices { get; } = [];
    /// <summary>Cumulative f_hat after each scale (B, Cvae, h, w); empty unless requested.</summary>
    public List<Tensor> Fhats { get; } = [];
    /// <summary>The residual searched at each scale (B, Cvae, pn, pn); empty unless diagnostics were requested.</summary>
    public List<Tensor> SearchedResiduals { get; } = [];
    /// <summary>Second-best minus best code distance (or best minus second cosine with znorm), (B, pn²); diagnostics only.</summary>
    public List<Tensor> Gaps { get; } = [];

    public void Dispose()
    {
        foreach (var t in Indices.Concat(Fhats).Concat(SearchedResiduals).Concat(Gaps)) t.Dispose();
    }
}

/// <summary>
/// The residual multi-scale vector quantizer (the reference's VectorQuantizer2). Field names are the state-dict keys:
/// quant_resi.*, ema_vocab_hit_SV, embedding.weight.
/// </summary>
public sealed class MultiScaleQuantizer : nn.Module
{
    private readonly PhiSet quant_resi;
    private readonly Tensor ema_vocab_hit_SV;
    private readonly Embedding embedding;
    private readonly VqVaeConfig cfg;

    public MultiScaleQuantizer(VqVaeConfig config, Device? device) : base(nameof(MultiScaleQuantizer))
    {
        cfg = config;
        quant_resi = new PhiSet(config, device);
        ema_vocab_hit_SV = zeros(config.NumScales, config.VocabSize, device: device);
        embedding = nn.Embedding(config.VocabSize, config.ZChannels, device: device);
        RegisterComponents();
    }

    public Embedding Codebook => embedding;
    public PhiSet Phis => quant_resi;
    public Tensor EmaVocabHits => ema_vocab_hit_SV;

    /// <summary>How many times the EMA of code hits was updated (the reference's record_hit); part of the train state.</summary>
    public long RecordHit { get; set; }

    private int[] PatchNums => cfg.VPatchNums;
    private int S => cfg.NumScales;

    /// <summary>
    /// Residual quantization of f (B, Cvae, pn_last, pn_last): at each scale area-downsample the rest, pick the nearest
    /// code, bicubic-upsample it (not at the last scale), refine with φ, add to f_hat and subtract from the rest.
    /// </summary>
    public QuantizeResult Quantize(Tensor f_BChw, bool keepFhats, bool keepDiagnostics)
    {
        CheckLatent(f_BChw);
        using var noGrad = no_grad();
        var result = new QuantizeResult();
        using var scope = NewDisposeScope();
        long b = f_BChw.shape[0], c = cfg.ZChannels, hw = cfg.LatentSize;
        var fRest_BChw = f_BChw.detach().clone();
        var fHat_BChw = zeros_like(fRest_BChw);
        for (int si = 0; si < S; si++)
        {
            int pn = PatchNums[si];
            // At the last scale the rest itself is searched; copy it before it is updated below.
            var z_BCpp = si != S - 1 ? F.adaptive_avg_pool2d(fRest_BChw, [pn, pn]) : keepDiagnostics ? fRest_BChw.clone() : fRest_BChw;
            var (idx_N, gap_N) = NearestCode(z_BCpp.permute(0, 2, 3, 1).reshape(-1, c), keepDiagnostics);
            var h_BChw = UpsampleAndRefine(si, embedding.call(idx_N.view(b, pn, pn)).permute(0, 3, 1, 2));
            fHat_BChw.add_(h_BChw);
            fRest_BChw.sub_(h_BChw);
            result.Indices.Add(idx_N.reshape(b, pn * pn).MoveToOuterDisposeScope());
            if (keepFhats) result.Fhats.Add(fHat_BChw.clone().MoveToOuterDisposeScope());
            if (keepDiagnostics)
            {
                result.SearchedResiduals.Add(z_BCpp.MoveToOuterDisposeScope());
                result.Gaps.Add(gap_N!.reshape(b, pn * pn).MoveToOuterDisposeScope());
            }
        }
        return result;
    }

    /// <summary>Nearest code per row of z (N, C), exactly as the reference: |z|²+|e|²−2·z·eᵀ via addmm, or cosine with znorm.</summary>
    private (Tensor idx_N, Tensor? gap_N) NearestCode(Tensor z_NC, bool withGap)
    {
        var e_VC = embedding.weight!.detach();
        if (cfg.UsingZnorm)
        {
            var sim_NV = F.normalize(z_NC, dim: -1).matmul(F.normalize(e_VC.t(), dim: 0));
            var idx = sim_NV.argmax(1);
            if (!withGap) return (idx, null);
            var top = sim_NV.topk(2, dim: 1, largest: true).values;
            return (idx, top[.., 0] - top[.., 1]);
        }
        var d_NV = z_NC.square().sum(1, keepdim: true) + e_VC.square().sum(1, keepdim: false);
        d_NV.addmm_(z_NC, e_VC.t(), beta: 1, alpha: -2);
        var argmin = d_NV.argmin(1);
        if (!withGap) return (argmin, null);
        var low = d_NV.topk(2, dim: 1, largest: false).values;
        return (argmin, low[.., 1] - low[.., 0]);
    }

    /// <summary>Upsample a scale's code map to the latent size (bicubic, except at the last scale) and apply its φ.</summary>
    private Tensor UpsampleAndRefine(int si, Tensor h_BCpp)
    {
        long hw = cfg.LatentSize;
        var up = si != S - 1 ? F.interpolate(h_BCpp, size: [hw, hw], mode: InterpolationMode.Bicubic, align_corners: false) : h_BCpp.contiguous();
        return quant_resi.ForScale(si).call(up);
    }

    /// <summary>Embeds the token maps of each scale as (B, Cvae, pn, pn).</summary>
    public List<Tensor> Embed(IReadOnlyList<Tensor> idx_Bl)
    {
        CheckIndices(idx_Bl, S);
        var result = new List<Tensor>(idx_Bl.Count);
        for (int si = 0; si < idx_Bl.Count; si++)
        {
            long b = idx_Bl[si].shape[0];
            int pn = PatchNums[si];
            using var e_BlC = embedding.call(idx_Bl[si]);
            result.Add(e_BlC.transpose(1, 2).reshape(b, cfg.ZChannels, pn, pn));
        }
        return result;
    }

    /// <summary>f_hat after every scale (or only the last) from per-scale indices (embed_to_fhat, all_to_max_scale).</summary>
    public List<Tensor> IndicesToFhats(IReadOnlyList<Tensor> idx_Bl, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        var h_list = Embed(idx_Bl);
        long b = idx_Bl[0].shape[0], hw = cfg.LatentSize;
        var fHat_BChw = zeros(b, cfg.ZChannels, hw, hw, dtype: float32, device: h_list[0].device);
        var result = new List<Tensor>();
        for (int si = 0; si < S; si++)
        {
            fHat_BChw.add_(UpsampleAndRefine(si, h_list[si]));
            if (!lastOnly) result.Add(fHat_BChw.clone().MoveToOuterDisposeScope());
        }
        if (lastOnly) result.Add(fHat_BChw.MoveToOuterDisposeScope());
        return result;
    }

    /// <summary>
    /// The transformer's teacher-forcing input (idxBl_to_var_input): for si &lt; S−1 accumulate φ(up(embed(idx_si))) and
    /// area-downsample f_hat to the next scale; (B, L − first_l, Cvae).
    /// </summary>
    public Tensor IndicesToVarInput(IReadOnlyList<Tensor> idx_Bl)
    {
        using var scope = NewDisposeScope();
        var h_list = Embed(idx_Bl);
        long b = idx_Bl[0].shape[0], hw = cfg.LatentSize;
        var fHat_BChw = zeros(b, cfg.ZChannels, hw, hw, dtype: float32, device: h_list[0].device);
        var pieces = new List<Tensor>();
        for (int si = 0; si < S - 1; si++)
        {
            fHat_BChw.add_(UpsampleAndRefine(si, h_list[si]));
            int next = PatchNums[si + 1];
            pieces.Add(F.adaptive_avg_pool2d(fHat_BChw, [next, next]).view(b, cfg.ZChannels, -1).transpose(1, 2));
        }
        return cat(pieces, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One step of autoregressive decoding (get_next_autoregressive_input): adds φ(up(h)) of scale si to f_hat in place
    /// and returns the next scale's input (B, Cvae, pn_next, pn_next), or f_hat itself after the last scale.
    /// </summary>
    public Tensor NextAutoregressiveInput(int si, Tensor fHat_BChw, Tensor h_BCpp)
    {
        using var scope = NewDisposeScope();
        fHat_BChw.add_(UpsampleAndRefine(si, h_BCpp));
        if (si == S - 1) return fHat_BChw.alias().MoveToOuterDisposeScope();
        int next = PatchNums[si + 1];
        return F.adaptive_avg_pool2d(fHat_BChw, [next, next]).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The training forward (VectorQuantizer2.forward): straight-through f_hat, vq loss = mean over scales of
    /// β·mse(f_hat.detach, f) + mse(f_hat, f.detach) on the cumulative f_hat, code hits per scale (S, V).
    /// Updates the hit EMA buffer (the reference records hits only under torch.distributed; we do on one process too, as
    /// usage figures and the dead-code remedy need them), unless <paramref name="recordHits"/> is
    /// false: then the caller sums the hits of several micro-batches and records them once with <see cref="RecordHits"/>.
    /// </summary>
    public (Tensor fHatStraightThrough, Tensor vqLoss, Tensor hits_SV) TrainForward(Tensor f_BChw, bool recordHits = true)
    {
        CheckLatent(f_BChw);
        using var scope = NewDisposeScope();
        long b = f_BChw.shape[0], c = cfg.ZChannels;
        var fNoGrad = f_BChw.detach();
        var fRest_BChw = fNoGrad.clone();
        Tensor fHat_BChw = zeros_like(fRest_BChw);
        Tensor? lossSum = null;
        var hits_SV = zeros(S, cfg.VocabSize, dtype: float32, device: f_BChw.device);
        for (int si = 0; si < S; si++)
        {
            int pn = PatchNums[si];
            Tensor idx_N;
            using (no_grad())
            {
                var z_BCpp = si != S - 1 ? F.adaptive_avg_pool2d(fRest_BChw, [pn, pn]) : fRest_BChw;
                idx_N = NearestCode(z_BCpp.permute(0, 2, 3, 1).reshape(-1, c), withGap: false).idx_N;
                hits_SV[si].copy_(idx_N.bincount(null, cfg.VocabSize).to(float32));
            }
            var h_BChw = UpsampleAndRefine(si, embedding.call(idx_N.view(b, pn, pn)).permute(0, 3, 1, 2));
            fHat_BChw = fHat_BChw + h_BChw;
            using (no_grad()) fRest_BChw.sub_(h_BChw);
            var term = F.mse_loss(fHat_BChw.detach(), f_BChw).mul(cfg.Beta) + F.mse_loss(fHat_BChw, fNoGrad);
            lossSum = lossSum is null ? term : lossSum + term;
        }
        if (recordHits) RecordHits(hits_SV);
        var vqLoss = lossSum!.mul(1.0 / S);
        var straightThrough = (fHat_BChw.detach() - fNoGrad).add_(f_BChw);
        return (straightThrough.MoveToOuterDisposeScope(), vqLoss.MoveToOuterDisposeScope(), hits_SV.MoveToOuterDisposeScope());
    }

    /// <summary>Folds one batch's code hits per scale (S, V) into the hit EMA that usage and the dead-code remedy read.</summary>
    public void RecordHits(Tensor hits_SV)
    {
        using var noGrad = no_grad();
        for (int si = 0; si < S; si++)
        {
            using var row = ema_vocab_hit_SV[si];
            using var hit = hits_SV[si];
            if (RecordHit == 0) row.copy_(hit);
            else if (RecordHit < 100) row.mul_(0.9).add_(hit.mul(0.1));
            else row.mul_(0.99).add_(hit.mul(0.01));
            RecordHit++;
        }
    }

    /// <summary>Codebook usage per scale in percent, as the reference reports it: EMA hits ≥ 0.08 × (tokens per batch / V).</summary>
    public double[] UsagePercentPerScale(long tokensPerBatch)
    {
        double margin = tokensPerBatch / (double)cfg.VocabSize * 0.08;
        using var above = ema_vocab_hit_SV.ge(margin).to(float32).mean([1L]).mul(100);
        return above.cpu().data<float>().ToArray().Select(v => (double)v).ToArray();
    }

    private void CheckLatent(Tensor f_BChw)
    {
        if (f_BChw.dim() != 4 || f_BChw.shape[1] != cfg.ZChannels || f_BChw.shape[2] != cfg.LatentSize || f_BChw.shape[3] != cfg.LatentSize)
            throw new VarSharpException($"Expected a latent of shape (B, {cfg.ZChannels}, {cfg.LatentSize}, {cfg.LatentSize}) but got ({string.Join(", ", f_BChw.shape)}).");
    }

    internal void CheckIndices(IReadOnlyList<Tensor> idx_Bl, int expectedScales)
    {
        if (idx_Bl.Count != expectedScales)
            throw new VarSharpException($"Expected token maps for {expectedScales} scales but got {idx_Bl.Count}.");
        for (int si = 0; si < idx_Bl.Count; si++)
        {
            long want = (long)PatchNums[si] * PatchNums[si];
            if (idx_Bl[si].dim() != 2 || idx_Bl[si].shape[1] != want)
                throw new VarSharpException($"Scale {si} needs {want} tokens per image (patch {PatchNums[si]}×{PatchNums[si]}) but got shape ({string.Join(", ", idx_Bl[si].shape)}).");
            if (idx_Bl[si].dtype != int64)
                throw new VarSharpException($"Token indices must be int64 but scale {si} is {idx_Bl[si].dtype}.");
        }
        using var noGrad = no_grad();
        foreach (var t in idx_Bl)
        {
            if (t.numel() == 0) continue;
            long min = t.min().item<long>(), max = t.max().item<long>();
            if (min < 0 || max >= cfg.VocabSize)
                throw new VarSharpException($"Token indices must lie in [0, {cfg.VocabSize - 1}] but range from {min} to {max}.");
        }
    }
}
