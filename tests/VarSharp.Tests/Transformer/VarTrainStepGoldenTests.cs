using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Checkpoints;
using VarSharp.Tests.Support;
using VarSharp.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Transformer;

/// <summary>
/// Two official training steps (VARTrainer.train_step without progressive training): train mode, cond_drop 0,
/// drop_path 0, loss = CE per token ×1/L summed over L and averaged over B, clip_grad_norm_(2.0), AdamW lr 1e-3,
/// betas (0.9, 0.95), eps 1e-8, wd 0.05 on the decay group (every parameter not in train.no_weight_decay_params).
/// </summary>
public class VarTrainStepGoldenTests(ITestOutputHelper output)
{
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void TwoAdamWStepsMatch(string caseName)
    {
        using var g = new VarGoldenCase(caseName);
        var train = g.Root.GetProperty("train");
        double lr = train.GetProperty("lr").GetDouble(), wd = train.GetProperty("weight_decay").GetDouble();
        var betas = train.GetProperty("betas").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        double eps = train.GetProperty("eps").GetDouble(), clip = train.GetProperty("grad_clip").GetDouble();
        int steps = train.GetProperty("steps").GetInt32();
        var noDecay = train.GetProperty("no_weight_decay_params").EnumerateArray().Select(e => e.GetString()!).ToHashSet();
        var paramNames = g.Root.GetProperty("var_param_names").EnumerateArray().Select(e => e.GetString()!).ToArray();

        // The goldens set var.cond_drop_rate = 0 before every call; drop_path is 0 in these cases.
        Assert.Equal(0.0, g.Config.DropPathRate);
        using var model = new VarModel(g.Config with { CondDropRate = 0 });
        ModuleWeights.LoadStrict(model, g.Model.state_dict());
        model.train();

        var named = model.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        Assert.Equal(paramNames.OrderBy(n => n, StringComparer.Ordinal), named.Keys.OrderBy(n => n, StringComparer.Ordinal));
        var decay = paramNames.Where(n => !noDecay.Contains(n)).Select(n => named[n]).ToList();
        var nodecay = paramNames.Where(noDecay.Contains).Select(n => named[n]).ToList();
        using var opt = optim.AdamW(
        [
            new AdamW.ParamGroup(decay, lr: lr, beta1: betas[0], beta2: betas[1], eps: eps, weight_decay: wd),
            new AdamW.ParamGroup(nodecay, lr: lr, beta1: betas[0], beta2: betas[1], eps: eps, weight_decay: 0),
        ], lr: lr, beta1: betas[0], beta2: betas[1], eps: eps);

        var labels = g["labels"];
        var x = g["var.x_BLCv_wo_first_l"];
        var gt_BL = g["var.gt_BL"];
        long B = gt_BL.shape[0], L = g.Config.L, V = g.Config.VocabSize;

        for (int step = 1; step <= steps; step++)
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var logits_BLV = model.Forward(labels, x);
            if (step == 1) TensorAssert.Close(logits_BLV, g["var_train.logits"], 1e-4, $"{caseName} var_train.logits");
            var loss = nn.functional.cross_entropy(logits_BLV.view(-1, V), gt_BL.view(-1), reduction: nn.Reduction.None)
                .view(B, L).mul(1.0 / L).sum(-1).mean();
            double ourLoss = loss.item<float>(), refLoss = g[$"var_train.step{step}.loss"].item<float>();
            Assert.True(Math.Abs(ourLoss - refLoss) <= 1e-5 * Math.Abs(refLoss), $"step {step} loss {ourLoss} vs {refLoss}");
            loss.backward();

            // Per-parameter gradient norms (before clipping) in the official named_parameters order.
            var norms = tensor(paramNames.Select(n => named[n].grad is { } gr ? gr.norm().item<float>() : 0f).ToArray());
            double normErr = TensorAssert.MaxAbsDiff(norms, g[$"var_train.step{step}.grad_norms"]);
            double normTol = 1e-3 * TensorAssert.MaxAbs(g[$"var_train.step{step}.grad_norms"]);
            Assert.True(normErr <= normTol, $"step {step} grad_norms max|Δ| {normErr:g3} > {normTol:g3}");

            double gradErr = 0;
            if (step == 1)
            {
                foreach (var key in g.Vectors.Keys.Where(k => k.StartsWith("var_train.step1.grad.", StringComparison.Ordinal)))
                {
                    var name = key["var_train.step1.grad.".Length..];
                    var refGrad = g[key];
                    double err = TensorAssert.MaxAbsDiff(named[name].grad!, refGrad), tol = 1e-3 * TensorAssert.MaxAbs(refGrad);
                    Assert.True(err <= tol, $"{name}: grad max|Δ| {err:g3} > {tol:g3}");
                    gradErr = Math.Max(gradErr, err / Math.Max(TensorAssert.MaxAbs(refGrad), 1e-30));
                }
                // The clamp probe: scale_mul_1H11 above ln 100 gets an exact zero gradient.
                if (g.Root.TryGetProperty("scale_mul_clamp_probe", out var probe) && probe.GetBoolean())
                    Assert.Equal(0f, named["blocks.0.attn.scale_mul_1H11"].grad![0, -1, 0, 0].item<float>());
            }

            double total = nn.utils.clip_grad_norm_(model.parameters(), clip);
            double refTotal = g[$"var_train.step{step}.grad_norm"].item<float>();
            Assert.True(Math.Abs(total - refTotal) <= 1e-3 * refTotal, $"step {step} total grad norm {total} vs {refTotal}");

            // Elements whose gradient is about eps in size can legitimately move by up to lr differently (README).
            var smallGrad = paramNames.ToDictionary(n => n, n => named[n].grad!.abs().lt(1e-6));
            opt.step();

            double worst = 0;
            foreach (var name in paramNames)
            {
                var refP = g[$"var_train.after_step{step}.{name}"];
                var diff = named[name].detach().sub(refP).abs();
                var allowed = where(smallGrad[name], full_like(diff, 2 * lr), full_like(diff, 5e-5));
                var bad = diff.gt(allowed).sum().item<long>();
                Assert.True(bad == 0, $"step {step} {name}: {bad} elements differ by more than allowed (max|Δ| {TensorAssert.MaxAbs(diff):g3})");
                using var strict = diff.masked_fill(smallGrad[name], 0);
                worst = Math.Max(worst, TensorAssert.MaxAbs(strict));
            }
            output.WriteLine($"{caseName} step {step}: loss {ourLoss:g8} (ref {refLoss:g8}), grad norm {total:g6} (ref {refTotal:g6}), " +
                             $"grad_norms max|Δ| {normErr:g3}{(step == 1 ? $", grads max rel {gradErr:g3}" : "")}, params after step max|Δ| {worst:g3}");
        }
    }
}
