using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Config;
using VarSharp.Tokenizer;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Training;

/// <summary>The arithmetic of one tokenizer step: forward and backward over the batch's slices, and the gradient norm.</summary>
public sealed partial class TokenizerTrainer
{
    /// <summary>
    /// Forward and backward of one batch in grad_accum slices (one slice: the whole batch), each slice's losses weighted
    /// by its share of the batch; the code hits of all slices are recorded once, as one batch's. With
    /// <paramref name="gan"/>, each slice adds the adaptively weighted adversarial term (its weight computed per slice)
    /// and the slices' real and reconstructed images are returned, detached, for the discriminator's step; they live in
    /// the caller's dispose scope.
    /// </summary>
    internal static StepLosses ForwardBackward(VqVae vae, Tensor x, TokenizerTrainConfig config, AdversarialLoss? gan = null)
    {
        long B = x.shape[0];
        int slices = config.GradAccum;
        double loss = 0, rec = 0, vq = 0, g = 0, weight = 0;
        Tensor? hits = null;
        var pairs = new List<(Tensor Real, Tensor Fake)>();
        var lastLayer = gan is null ? null : vae.Decoder.LastLayerWeight;
        for (int i = 0; i < slices; i++)
        {
            long from = B * i / slices, to = B * (i + 1) / slices;
            using var scope = NewDisposeScope();
            var xs = slices == 1 ? x : x[TensorIndex.Slice(from, to)];
            using var output = vae.TrainForward(xs, recordHits: slices == 1);
            var recLoss = config.RecLoss switch
            {
                "l1" => F.l1_loss(output.Reconstruction, xs),
                "l2" => F.mse_loss(output.Reconstruction, xs),
                _ => F.l1_loss(output.Reconstruction, xs) + F.mse_loss(output.Reconstruction, xs),
            };
            var total = config.VqWeight == 0 ? recLoss : recLoss + output.VqLoss.mul(config.VqWeight);
            double share = (to - from) / (double)B;
            // The reported loss is the reconstruction objective (rec + vq); the adversarial term, which may be negative,
            // is reported on its own as g_loss and d_weight.
            loss += total.item<float>() * share;
            if (gan is not null)
            {
                var (weighted, raw, w) = gan.GeneratorTerm(output.Reconstruction, recLoss, lastLayer!);
                total = total + weighted;
                g += raw * share;
                weight += w * share;
                pairs.Add((xs.detach().MoveToOuterDisposeScope(), output.Reconstruction.detach().MoveToOuterDisposeScope()));
            }
            (slices == 1 ? total : total.mul(share)).backward();
            rec += recLoss.item<float>() * share;
            vq += output.VqLoss.item<float>() * share;
            if (slices > 1) hits = hits is null ? output.Hits_SV.clone().MoveToOuterDisposeScope() : hits.add_(output.Hits_SV);
        }
        if (hits is not null)
        {
            vae.Quantizer.RecordHits(hits);
            hits.Dispose();
        }
        return new StepLosses(loss, rec, vq, g, weight, pairs);
    }

    /// <summary>One batch's losses; with the adversarial loss on, its raw generator term, adaptive weight and (real, fake) slices.</summary>
    internal sealed record StepLosses(double Loss, double Rec, double Vq, double GeneratorLoss, double AdaptiveWeight,
        IReadOnlyList<(Tensor Real, Tensor Fake)> Slices);

    /// <summary>Means of the adversarial figures over the steps of one log window that had them.</summary>
    private sealed class AdversarialWindow
    {
        private readonly List<(double G, double Weight, double D, double Real, double Fake)> steps = [];
        public void Add(double g, double weight, double d, double real, double fake) => steps.Add((g, weight, d, real, fake));
        public void Clear() => steps.Clear();
        public JsonNode? Mean(Func<(double G, double Weight, double D, double Real, double Fake), double> pick) =>
            steps.Count == 0 ? null : TrainLog.Number(steps.Average(pick));
    }

    private static double GradNorm(IEnumerable<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        double sum = 0;
        foreach (var p in parameters)
            if (p.grad is { } g) sum += g.square().sum().item<float>();
        return Math.Sqrt(sum);
    }
}
