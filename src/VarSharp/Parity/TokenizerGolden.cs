using VarSharp.Checkpoints;
using VarSharp.Tokenizer;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Parity;

/// <summary>Recomputes every tokenizer tensor of a golden case (`vae.*`, `vae_train.*`, `var.gt_BL`, `var.x_BLCv_wo_first_l`).</summary>
public static class TokenizerGolden
{
    public static Dictionary<string, Tensor> Compute(GoldenCase gc)
    {
        var cfg = gc.VqVae;
        var outputs = new Dictionary<string, Tensor>();
        using var vae = new VqVae(cfg);
        ModuleWeights.LoadStrict(vae, gc.Weights, "vae.");
        var inp = gc.Vector("inp");
        int s = cfg.NumScales;

        using (no_grad())
        {
            outputs["vae.enc_out"] = vae.EncoderOutput(inp);
            var f = vae.Encode(inp);
            outputs["vae.f"] = f;
            using var q = vae.Quantizer.Quantize(f, keepFhats: true, keepDiagnostics: true);
            for (int k = 0; k < s; k++)
            {
                outputs[$"vae.idx.s{k}"] = q.Indices[k].clone();
                outputs[$"vae.fhat.s{k}"] = q.Fhats[k].clone();
                outputs[$"vae.zq_in.s{k}"] = q.SearchedResiduals[k].clone();
                outputs[$"vae.idx_gap.s{k}"] = q.Gaps[k].clone();
            }
            outputs["vae.rec_from_fhat"] = vae.FhatToImage(q.Fhats[^1]);
            outputs["var.gt_BL"] = cat(q.Indices, 1);

            // Index → image/latent paths are checked on the reference's own indices, so that a legitimate tie in the
            // nearest-code search (reported on vae.idx.*) cannot hide or fake a decoding error.
            var refIdx = Enumerable.Range(0, s).Select(k => gc.Vector($"vae.idx.s{k}")).ToList();
            outputs["vae.rec_from_idx"] = vae.IndicesToImage(refIdx);
            outputs["vae.fhat_from_idx"] = vae.Quantizer.IndicesToFhats(refIdx, lastOnly: true)[0];
            var perScale = vae.IndicesToImages(refIdx, lastOnly: false);
            outputs["vae.rec_per_scale"] = stack(perScale, 0);
            foreach (var t in perScale) t.Dispose();
            outputs["var.x_BLCv_wo_first_l"] = vae.IndicesToVarInput(refIdx);
        }

        ComputeTraining(gc, vae, inp, outputs);
        return outputs;
    }

    /// <summary>vae.train(); rec, vq = vae(inp); loss = mse(rec, inp) + vq; gradients of every parameter.</summary>
    private static void ComputeTraining(GoldenCase gc, VqVae vae, Tensor inp, Dictionary<string, Tensor> outputs)
    {
        vae.train();
        foreach (var p in vae.parameters()) p.requires_grad_(true);
        vae.zero_grad();
        using var train = vae.TrainForward(inp);
        using var loss = F.mse_loss(train.Reconstruction, inp) + train.VqLoss;
        loss.backward();
        outputs["vae_train.rec"] = train.Reconstruction.detach().clone();
        outputs["vae_train.vq_loss"] = train.VqLoss.detach().clone();
        outputs["vae_train.loss"] = loss.detach().clone();
        var grads = vae.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        foreach (var name in gc.Vectors.Keys.Where(k => k.StartsWith("vae_train.grad.", StringComparison.Ordinal)))
        {
            var param = name["vae_train.grad.".Length..];
            if (grads.TryGetValue(param, out var g) && g is not null) outputs[name] = g.detach().clone();
        }
        if (gc.Config.RootElement.TryGetProperty("vae_param_names", out var order))
        {
            var norms = order.EnumerateArray().Select(n => grads.TryGetValue(n.GetString()!, out var g) && g is not null
                ? g.detach().to(float64).norm().item<double>() : 0.0).Select(v => (float)v).ToArray();
            outputs["vae_train.grad_norms"] = tensor(norms);
        }
        vae.eval();
    }
}
