using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Tests.Support;
using VarSharp.Training;
using VarSharp.Transformer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Transformer;

/// <summary>
/// Two official training steps (VARTrainer.train_step without progressive training) through <see cref="VarTrainStep"/>:
/// train mode, cond_drop 0, drop_path 0, loss = CE per token ×1/L summed over L and averaged over B,
/// clip_grad_norm_(2.0), AdamW lr 1e-3, betas (0.9, 0.95), eps 1e-8, wd 0.05 on the decay group.
/// </summary>
public class VarTrainStepGoldenTests(ITestOutputHelper output)
{
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void TwoAdamWStepsMatch(string caseName)
    {
        using var g = new VarGoldenCase(caseName);
        var train = g.Root.GetProperty("train");
        var settings = VarTrainSettings.FromJson(train);
        int steps = train.GetProperty("steps").GetInt32();
        var noDecay = train.GetProperty("no_weight_decay_params").EnumerateArray().Select(e => e.GetString()!).ToHashSet();
        var paramNames = g.Root.GetProperty("var_param_names").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.Equal((1e-3, 0.05, 0.9, 0.95, 1e-8, 2.0), (settings.Lr, settings.WeightDecay, settings.Beta1, settings.Beta2, settings.Eps, settings.GradClip));

        // The goldens set var.cond_drop_rate = 0 before every call; drop_path is 0 in these cases.
        Assert.Equal(0.0, g.Config.DropPathRate);
        using var model = new VarModel(g.Config with { CondDropRate = 0 });
        ModuleWeights.LoadStrict(model, g.Model.state_dict());

        // The official filter_params rule reproduces the reference's no-weight-decay list.
        using var step = new VarTrainStep(model, settings);
        Assert.Equal(noDecay.OrderBy(n => n, StringComparer.Ordinal), step.NoDecayNames.OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(paramNames.Order(StringComparer.Ordinal), step.ParameterNames.Order(StringComparer.Ordinal));
        var named = model.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);

        var labels = g["labels"];
        var x = g["var.x_BLCv_wo_first_l"];
        var gt_BL = g["var.gt_BL"];
        var tiny = paramNames.ToDictionary(n => n, n => zeros_like(named[n], dtype: ScalarType.Bool));

        for (int s = 1; s <= steps; s++)
        {
            using var scope = NewDisposeScope();
            using var r = step.Step(labels, x, gt_BL, keepGradients: true, keepLogits: s == 1);
            if (s == 1) TensorAssert.Close(r.Logits!, g["var_train.logits"], 1e-4, $"{caseName} var_train.logits");
            double refLoss = g[$"var_train.step{s}.loss"].item<float>();
            Assert.True(Math.Abs(r.Loss - refLoss) <= 1e-5 * Math.Abs(refLoss), $"step {s} loss {r.Loss} vs {refLoss}");

            var norms = tensor(paramNames.Select(n => (float)r.GradNorms[n]).ToArray());
            double normErr = TensorAssert.MaxAbsDiff(norms, g[$"var_train.step{s}.grad_norms"]);
            double normTol = 1e-3 * TensorAssert.MaxAbs(g[$"var_train.step{s}.grad_norms"]);
            Assert.True(normErr <= normTol, $"step {s} grad_norms max|Δ| {normErr:g3} > {normTol:g3}");

            double gradErr = 0;
            if (s == 1)
            {
                foreach (var key in g.Vectors.Keys.Where(k => k.StartsWith("var_train.step1.grad.", StringComparison.Ordinal)))
                {
                    var name = key["var_train.step1.grad.".Length..];
                    var refGrad = g[key];
                    double err = TensorAssert.MaxAbsDiff(r.Gradients![name], refGrad), tol = 1e-3 * TensorAssert.MaxAbs(refGrad);
                    Assert.True(err <= tol, $"{name}: grad max|Δ| {err:g3} > {tol:g3}");
                    gradErr = Math.Max(gradErr, err / Math.Max(TensorAssert.MaxAbs(refGrad), 1e-30));
                }
                // The clamp probe: scale_mul_1H11 above ln 100 gets an exact zero gradient.
                if (g.Root.TryGetProperty("scale_mul_clamp_probe", out var probe) && probe.GetBoolean())
                    Assert.Equal(0f, r.Gradients!["blocks.0.attn.scale_mul_1H11"][0, -1, 0, 0].item<float>());
            }

            double refTotal = g[$"var_train.step{s}.grad_norm"].item<float>();
            Assert.True(Math.Abs(r.GradNorm - refTotal) <= 1e-3 * refTotal, $"step {s} total grad norm {r.GradNorm} vs {refTotal}");

            // Elements whose (clipped) gradient is about eps in size can legitimately move by up to lr differently (README).
            double worst = 0;
            foreach (var name in paramNames)
            {
                // The reference's gradient decides where the case lists it (step 1), ours elsewhere.
                var decider = s == 1 && g.Vectors.ContainsKey($"var_train.step1.grad.{name}") ? g[$"var_train.step1.grad.{name}"] : r.Gradients![name];
                tiny[name].logical_or_(decider.abs().mul(r.ClipCoefficient).lt(1e-6));
                var refP = g[$"var_train.after_step{s}.{name}"];
                var diff = named[name].detach().sub(refP).abs();
                var allowed = where(tiny[name], full_like(diff, 2 * settings.Lr), full_like(diff, 5e-5));
                var bad = diff.gt(allowed).sum().item<long>();
                Assert.True(bad == 0, $"step {s} {name}: {bad} elements differ by more than allowed (max|Δ| {TensorAssert.MaxAbs(diff):g3})");
                worst = Math.Max(worst, TensorAssert.MaxAbs(diff.masked_fill(tiny[name], 0)));
            }
            output.WriteLine($"{caseName} step {s}: loss {r.Loss:g8} (ref {refLoss:g8}), grad norm {r.GradNorm:g6} (ref {refTotal:g6}), " +
                             $"grad_norms max|Δ| {normErr:g3}{(s == 1 ? $", grads max rel {gradErr:g3}" : "")}, params after step max|Δ| {worst:g3}");
        }
        foreach (var t in tiny.Values) t.Dispose();
    }
}
