using TorchSharp;
using VarSharp.Config;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Training;

/// <summary>
/// VQGAN's adversarial loss for the tokenizer: a <see cref="PatchDiscriminator"/> with its own AdamW, the generator
/// term −mean(D(x̂)) weighted adaptively (‖∇_W L_rec‖ / (‖∇_W L_G‖ + 1e-4), clamped to [0, 10⁴], times disc_weight, with
/// W the decoder's last convolution), and a hinge or softplus ("vanilla") discriminator loss on real images
/// against the step's reconstructions. Both terms are off before disc_start. The discriminator trains on the same
/// reconstructions the generator step produced (detached), one discriminator step per tokenizer step.
/// </summary>
public sealed class AdversarialLoss : IDisposable
{
    public const string WeightPrefix = "disc.";
    public const string OptimizerPrefix = "disc_optim.";
    private const ulong InitStream = 0xD15C;

    private readonly TokenizerTrainConfig config;
    private readonly AdamWOptimizer optimizer;

    public PatchDiscriminator Discriminator { get; }

    public AdversarialLoss(TokenizerTrainConfig config, int inChannels, Device device)
    {
        this.config = config;
        Discriminator = TrainDevice.Create(() => new PatchDiscriminator(inChannels, config.DiscChannels, config.DiscLayers), d =>
        {
            using var generator = new Generator(RunFolder.StreamSeed(config.Seed, InitStream));
            d.Initialize(generator);
        }, device);
        optimizer = new AdamWOptimizer(Discriminator.named_parameters().Select(p => (p.name, p.parameter)), (_, _) => false,
            config.DiscBeta1, config.DiscBeta2, config.Eps, weightDecay: 0, statePrefix: OptimizerPrefix);
        Discriminator.train();
    }

    /// <summary>Whether the adversarial terms apply at the step about to be taken (0-based count of steps done).</summary>
    public bool ActiveAt(long step) => step >= config.DiscStart;

    /// <summary>
    /// The generator's adversarial loss for <paramref name="reconstruction"/>, already multiplied by the adaptive weight
    /// computed from <paramref name="recLoss"/> at <paramref name="lastLayer"/>; returns the weighted loss, the raw
    /// −mean(D(x̂)) and the weight. The discriminator's parameters get no gradient from it.
    /// </summary>
    public (Tensor Weighted, double Raw, double Weight) GeneratorTerm(Tensor reconstruction, Tensor recLoss, Tensor lastLayer)
    {
        foreach (var p in Discriminator.parameters()) p.requires_grad = false;
        try
        {
            var gLoss = Discriminator.call(reconstruction).mean().neg();
            double weight = config.DiscWeight;
            if (config.DiscAdaptive)
            {
                using var scope = NewDisposeScope();
                var recGrad = torch.autograd.grad([recLoss], [lastLayer], retain_graph: true)[0];
                var gGrad = torch.autograd.grad([gLoss], [lastLayer], retain_graph: true)[0];
                double ratio = recGrad.norm().item<float>() / (gGrad.norm().item<float>() + 1e-4);
                weight *= Math.Clamp(ratio, 0, 1e4);
            }
            return (gLoss.mul(weight), gLoss.item<float>(), weight);
        }
        finally
        {
            foreach (var p in Discriminator.parameters()) p.requires_grad = true;
        }
    }

    /// <summary>The discriminator's loss on a real batch and a fake (detached) one, with the mean logits of each.</summary>
    public (Tensor Loss, double Real, double Fake) DiscriminatorLoss(Tensor real, Tensor fake)
    {
        var logitsReal = Discriminator.call(real);
        var logitsFake = Discriminator.call(fake.detach());
        var loss = config.DiscLoss == "hinge"
            ? F.relu(logitsReal.neg().add(1)).mean().add(F.relu(logitsFake.add(1)).mean()).mul(0.5)
            : F.softplus(logitsReal.neg()).mean().add(F.softplus(logitsFake).mean()).mul(0.5);
        return (loss, logitsReal.mean().item<float>(), logitsFake.mean().item<float>());
    }

    /// <summary>
    /// One discriminator update on real/fake slices (the same slices the generator step used), each slice's loss
    /// weighted by its share of the batch; <paramref name="lr"/> is the tokenizer's learning rate at this step, scaled
    /// by disc_lr / lr. Returns (loss, mean real logit, mean fake logit).
    /// </summary>
    public (double Loss, double Real, double Fake) Step(IReadOnlyList<(Tensor Real, Tensor Fake)> slices, double lr)
    {
        long total = slices.Sum(s => s.Real.shape[0]);
        double loss = 0, real = 0, fake = 0;
        optimizer.ZeroGrad();
        foreach (var (r, f) in slices)
        {
            using var scope = NewDisposeScope();
            double share = r.shape[0] / (double)total;
            var (l, lr_, lf) = DiscriminatorLoss(r, f);
            (slices.Count == 1 ? l : l.mul(share)).backward();
            loss += l.item<float>() * share;
            real += lr_ * share;
            fake += lf * share;
        }
        optimizer.Step(lr * (config.DiscLr ?? config.Lr) / config.Lr);
        optimizer.ZeroGrad();
        return (loss, real, fake);
    }

    /// <summary>The discriminator's weights and buffers and its optimizer's state, named for a train-state file.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() =>
        Discriminator.state_dict().Select(kv => KeyValuePair.Create(WeightPrefix + kv.Key, kv.Value))
            .Concat(optimizer.StateTensors());

    /// <summary>Restores what <see cref="StateTensors"/> produced; every tensor must be present with its shape.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        try
        {
            Checkpoints.ModuleWeights.LoadStrict(Discriminator, state, WeightPrefix);
        }
        catch (VarSharpException e)
        {
            throw new VarSharpException($"{source}: the discriminator's state (disc_weight is on): {e.Message}", e);
        }
        optimizer.LoadState(state, source);
    }

    public void Dispose()
    {
        optimizer.Dispose();
        Discriminator.Dispose();
    }
}
