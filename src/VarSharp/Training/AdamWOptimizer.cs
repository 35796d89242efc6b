using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// AdamW (decoupled weight decay) with the arithmetic of torch.optim.AdamW's single-tensor path, written out so that
/// its whole state — per-parameter step counts and both moments — is plain named tensors that a checkpoint stores and
/// a resumed run restores exactly. Parameters without a gradient in a step are left alone, as PyTorch does.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly List<Slot> slots;
    private readonly string prefix;

    private sealed class Slot(string name, Parameter p, bool decay)
    {
        public string Name { get; } = name;
        public Parameter Param { get; } = p;
        public bool Decay { get; } = decay;
        public long Step { get; set; }
        public Tensor ExpAvg { get; } = zeros_like(p).detach();
        public Tensor ExpAvgSq { get; } = zeros_like(p).detach();
    }

    /// <param name="parameters">Named parameters in a fixed order.</param>
    /// <param name="decay">Which parameters get weight decay.</param>
    /// <param name="statePrefix">Prefix of the state tensors' names, so that two optimizers can share one checkpoint file.</param>
    public AdamWOptimizer(IEnumerable<(string Name, Parameter Param)> parameters, Func<string, Parameter, bool> decay,
        double beta1, double beta2, double eps, double weightDecay, string statePrefix = "optim.")
    {
        prefix = statePrefix;
        slots = parameters.Select(np => new Slot(np.Name, np.Param, decay(np.Name, np.Param))).ToList();
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    public IEnumerable<Parameter> Parameters => slots.Select(s => s.Param);
    public IEnumerable<string> DecayedNames => slots.Where(s => s.Decay).Select(s => s.Name);

    public void ZeroGrad()
    {
        foreach (var s in slots)
        {
            using var g = s.Param.grad;
            if (g is not null) s.Param.grad = null;
        }
    }

    public void Step(double lr)
    {
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            using var scope = NewDisposeScope();
            if (s.Param.grad is not { } grad) continue;
            s.Step++;
            if (s.Decay && WeightDecay != 0) s.Param.mul_(1 - lr * WeightDecay);
            s.ExpAvg.mul_(Beta1).add_(grad, 1 - Beta1);
            s.ExpAvgSq.mul_(Beta2).addcmul_(grad, grad, 1 - Beta2);
            double bc1 = 1 - Math.Pow(Beta1, s.Step);
            double bc2 = 1 - Math.Pow(Beta2, s.Step);
            var denom = s.ExpAvgSq.sqrt().div_(Math.Sqrt(bc2)).add_(Eps);
            s.Param.addcdiv_(s.ExpAvg, denom, -lr / bc1);
        }
    }

    /// <summary>Zeroes the moments of the given rows of one parameter (after those rows were re-initialised).</summary>
    public void ResetRows(string name, Tensor rows)
    {
        var s = slots.FirstOrDefault(x => x.Name == name) ?? throw new ArgumentException($"no parameter named {name}", nameof(name));
        using var noGrad = no_grad();
        using var onDevice = rows.to(s.ExpAvg.device);
        s.ExpAvg.index_fill_(0, onDevice, 0);
        s.ExpAvgSq.index_fill_(0, onDevice, 0);
    }

    /// <summary>The state as named tensors: optim.step.NAME (int64 scalar), optim.exp_avg.NAME, optim.exp_avg_sq.NAME (with the state prefix for "optim.").</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var s in slots)
        {
            yield return KeyValuePair.Create($"{prefix}step.{s.Name}", tensor(s.Step));
            yield return KeyValuePair.Create($"{prefix}exp_avg.{s.Name}", s.ExpAvg.alias());
            yield return KeyValuePair.Create($"{prefix}exp_avg_sq.{s.Name}", s.ExpAvgSq.alias());
        }
    }

    /// <summary>Restores what <see cref="StateTensors"/> produced; every parameter must be present with its shape.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            var step = Get(state, $"{prefix}step.{s.Name}", source);
            var m = Get(state, $"{prefix}exp_avg.{s.Name}", source);
            var v = Get(state, $"{prefix}exp_avg_sq.{s.Name}", source);
            if (!m.shape.SequenceEqual(s.ExpAvg.shape) || !v.shape.SequenceEqual(s.ExpAvgSq.shape) || m.dtype != s.ExpAvg.dtype || v.dtype != s.ExpAvgSq.dtype)
                throw new VarSharpException($"{source}: optimizer moments of '{s.Name}' are [{string.Join(", ", m.shape)}] but the parameter is [{string.Join(", ", s.ExpAvg.shape)}].");
            if (step.dtype != ScalarType.Int64 || step.numel() != 1)
                throw new VarSharpException($"{source}: '{prefix}step.{s.Name}' must be one int64 value.");
            s.Step = step.item<long>();
            s.ExpAvg.copy_(m);
            s.ExpAvgSq.copy_(v);
        }
        var known = slots.SelectMany(s => new[] { $"{prefix}step.{s.Name}", $"{prefix}exp_avg.{s.Name}", $"{prefix}exp_avg_sq.{s.Name}" }).ToHashSet();
        var extra = state.Keys.FirstOrDefault(k => k.StartsWith(prefix, StringComparison.Ordinal) && !known.Contains(k));
        if (extra is not null) throw new VarSharpException($"{source}: optimizer state '{extra}' belongs to no parameter of this model.");
    }

    private static Tensor Get(IReadOnlyDictionary<string, Tensor> state, string key, string source) =>
        state.TryGetValue(key, out var t) ? t : throw new VarSharpException($"{source} lacks optimizer state '{key}'; expected it for every parameter.");

    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.ExpAvg.Dispose();
            s.ExpAvgSq.Dispose();
        }
    }
}
