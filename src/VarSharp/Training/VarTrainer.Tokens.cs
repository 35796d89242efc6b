using System.Diagnostics;
using System.Text.Json.Nodes;
using TorchSharp;
using VarSharp.Data;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>Where a run's token pyramids come from (precomputed, both flip views, or per batch) and how batches are drawn.</summary>
public sealed partial class VarTrainer
{
    /// <summary>
    /// Tokenizes what can be tokenized ahead: the training set (unless it augments; from the cache file when one
    /// matches) and the held-out slice. Run calls it; call it earlier to control when the work happens.
    /// Returns false when cancelled.
    /// </summary>
    public bool PrepareTokens(Action<TrainEvent>? observe = null, CancellationToken cancel = default)
    {
        if (trainTokens is null && !TokenizesPerBatch)
        {
            trainTokens = TrainingPyramids(null, observe, cancel);
            if (trainTokens is null) return false;
        }
        if (trainTokensMirrored is null && UsesFlipViews)
        {
            trainTokensMirrored = TrainingPyramids(MirrorView, observe, cancel);
            if (trainTokensMirrored is null) return false;
        }
        if (evalTokens is null && data.Eval is { } evalSet && Config.EvalImages > 0)
        {
            var heldOut = evalSet.HeldOut(Config.EvalImages);
            int n = heldOut.Count;
            string what = $"tokenizing {n} held-out images";
            observe?.Invoke(new PrepareEvent(step, what, 0, n));
            evalTokens = TokenPyramids.Compute(vae, evalSet, heldOut, (done, total) => observe?.Invoke(new PrepareEvent(step, what, done, total)), cancel);
            if (evalTokens is null) return false;
        }
        return true;
    }

    private const string MirrorView = "hflip";

    /// <summary>
    /// The training set's pyramids in one view (null: as it is; <see cref="MirrorView"/>: every image mirrored), from the
    /// cache file when one matches, else computed and cached. Null when cancelled.
    /// </summary>
    private TokenPyramids? TrainingPyramids(string? view, Action<TrainEvent>? observe, CancellationToken cancel)
    {
        var set = data.Train;
        var folder = Config.TokenCache is null ? runDir : Path.GetFullPath(Config.TokenCache);
        var path = Path.Combine(folder, TokenPyramids.CacheFileName(tokenizerDigest, set, view));
        var clock = Stopwatch.StartNew();
        var tokens = TokenPyramids.TryLoad(path, tokenizerDigest, set, model.Config.L, out var ignored, view);
        bool loaded = tokens is not null;
        if (ignored is not null) Say(observe, $"ignored the token cache {path}: {ignored}; tokenizing again");
        string images = view is null ? "training images" : "mirrored training images";
        if (tokens is null)
        {
            string what = $"tokenizing {set.Count} {images}";
            observe?.Invoke(new PrepareEvent(step, what, 0, set.Count));
            tokens = TokenPyramids.Compute(vae, set, set.Count, (done, total) => observe?.Invoke(new PrepareEvent(step, what, done, total)), cancel,
                augmentKey: view is null ? null : MirroringKey(set));
            if (tokens is null) return null;
            tokens.Save(path, tokenizerDigest, set, view);
        }
        log.Write("tokens", step, new Dictionary<string, JsonNode?>
        {
            ["split"] = "train",
            ["view"] = view,
            ["images"] = tokens.Count,
            ["cache"] = path,
            ["from_cache"] = loaded,
            ["cache_ignored"] = ignored,
            ["seconds"] = TrainLog.Number(clock.Elapsed.TotalSeconds),
        });
        Say(observe, loaded
            ? $"loaded the token pyramids of {tokens.Count} {images} from {path}"
            : Invariant($"tokenized {tokens.Count} {images} in {clock.Elapsed.TotalSeconds:0.0} s; cached in {path}"));
        return tokens;
    }

    // The first of the keys 0, 1, 2, … that mirrors a sample: Fill with it gives every image's mirrored view.
    private static ulong MirroringKey(IImageDataset set)
    {
        for (ulong key = 0; key < 1024; key++)
            if (set.FlipsFor(key) == true) return key;
        throw new InvalidOperationException("no augmentation key among the first 1024 mirrors a sample");
    }

    /// <summary>The next batch: labels (B,) int64 and tokens (B, L) int64, and the position it came from (internal for tests).</summary>
    internal (Tensor Labels, Tensor Tokens, DataPosition Position) NextBatch()
    {
        if (loader is not null)
        {
            var batch = loader.Next();
            using var noGrad = no_grad();
            var x = torch.tensor(batch.Pixels, batch.Shape, device: device);
            var tokens = cat(vae.ImageToIndices(x), 1);
            position = loader.Position;
            return (torch.tensor(batch.Labels, device: device), tokens, batch.Position);
        }
        var at = position;
        if (order is null || orderEpoch != at.Epoch)
        {
            order = EpochOrder.Permutation(Config.Seed, at.Epoch, trainTokens!.Count);
            orderEpoch = at.Epoch;
        }
        var slots = order.AsSpan(at.Batch * Config.BatchSize, Config.BatchSize);
        var (labels, gt) = trainTokens!.Gather(slots, device);
        if (trainTokensMirrored is not null)
        {
            // Each sample takes the view its augmentation key picks, the key the per-batch loader would give it.
            var mirrored = new bool[Config.BatchSize];
            for (int i = 0; i < mirrored.Length; i++)
                mirrored[i] = data.Train.FlipsFor(BatchLoader.AugmentKey(Config.Seed, at.Epoch, at.Batch * Config.BatchSize + i)) == true;
            var (otherLabels, otherTokens) = trainTokensMirrored.Gather(slots, device);
            otherLabels.Dispose();
            using (otherTokens)
            using (var pick = torch.tensor(mirrored, device: device).unsqueeze(1))
            using (var chosen = torch.where(pick, otherTokens, gt))
            {
                gt.Dispose();
                gt = chosen.alias();
            }
        }
        int perEpoch = trainTokens.Count / Config.BatchSize;
        position = at.Batch + 1 < perEpoch ? at with { Batch = at.Batch + 1 } : new DataPosition(at.Epoch + 1, 0);
        return (labels, gt, at);
    }

    /// <summary>The transformer's teacher-forcing input (B, L − first_l, Cvae) for token ids (B, L).</summary>
    private Tensor VarInput(Tensor tokens_BL)
    {
        using var noGrad = no_grad();
        return vae.IndicesToVarInput(TokenPyramids.PerScale(tokens_BL, model.Config.PatchNums));
    }
}
