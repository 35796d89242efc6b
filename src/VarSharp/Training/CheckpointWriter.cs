using System.Globalization;
using System.Text;
using VarSharp.Checkpoints;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Writes a training checkpoint atomically: everything goes into a hidden sibling folder first, which is renamed into
/// place only when complete, so a crash never leaves a half-written checkpoint under the final name. Layout:
/// <code>
/// step-N/model/                    a model bundle (config.json + model.safetensors + manifest.json of SHA-256s),
///                                  written by <see cref="ModelBundle.Write"/>: every verb loads it, and verifies it
/// step-N/train_state.safetensors   optimizer moments, step counts, RNG and data position (not part of the model)
/// </code>
/// The train state sits beside the bundle rather than inside it because a bundle refuses files its manifest does not
/// list. An existing checkpoint folder is never replaced.
/// </summary>
public static class CheckpointWriter
{
    public const string ModelDir = "model";
    public const string ConfigFile = ModelBundle.ConfigFileName;
    public const string ModelFile = ModelBundle.WeightsFileName;
    public const string TrainStateFile = "train_state.safetensors";

    /// <summary>The train state's SHA-256 in `sha256sum` format (`sha256sum -c train_state.sha256` checks it by hand).</summary>
    public const string TrainStateDigestFile = "train_state.sha256";

    /// <summary>The model bundle inside a checkpoint folder.</summary>
    public static string ModelFolderOf(string checkpoint) => Path.Combine(checkpoint, ModelDir);

    public static string ConfigPath(string checkpoint) => Path.Combine(checkpoint, ModelDir, ConfigFile);
    public static string ModelPath(string checkpoint) => Path.Combine(checkpoint, ModelDir, ModelFile);
    public static string TrainStatePath(string checkpoint) => Path.Combine(checkpoint, TrainStateFile);

    /// <param name="producer">Recorded in the weights file's metadata (`producer`), e.g. "varsharp train".</param>
    public static void Write(string dir, string configJson, IEnumerable<KeyValuePair<string, Tensor>> model,
        IEnumerable<KeyValuePair<string, Tensor>> trainState, IReadOnlyDictionary<string, string>? trainStateMetadata = null,
        string producer = "varsharp")
    {
        var full = Path.GetFullPath(dir);
        if (Directory.Exists(full) || File.Exists(full))
            throw new VarSharpException($"Checkpoint folder {full} already exists; checkpoints are never overwritten.");
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        using var tracked = TemporaryPaths.Track(temp);
        Directory.CreateDirectory(temp);
        try
        {
            ModelBundle.Write(Path.Combine(temp, ModelDir), configJson, model, producer: producer);
            var statePath = Path.Combine(temp, TrainStateFile);
            SafeTensors.Save(statePath, trainState, trainStateMetadata);
            AtomicFile.Write(Path.Combine(temp, TrainStateDigestFile), Encoding.ASCII.GetBytes($"{FileDigest.Sha256(statePath)}  {TrainStateFile}\n"));
            // The folder's entries reach the disk before it is renamed into place, and the rename before the caller
            // prunes older checkpoints: a power cut can then lose the newest checkpoint, never all of them.
            ModelBundle.SyncDirectory(temp);
            tracked.Publish(() => Directory.Move(temp, full));
            ModelBundle.SyncDirectory(parent);
        }
        catch
        {
            try { Directory.Delete(temp, recursive: true); }
            catch (IOException) { }
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint's train state in one pass that also hashes it, refuses it unless its metadata names
    /// <paramref name="format"/> and its SHA-256 equals the one <see cref="TrainStateDigestFile"/> records, and returns
    /// the tensors with that metadata. Checkpoints written before the digest existed load with <paramref name="note"/>
    /// saying they were not verified.
    /// </summary>
    public static (Dictionary<string, Tensor> State, IReadOnlyDictionary<string, string> Metadata) LoadTrainState(
        string checkpoint, string format, string what, out string? note)
    {
        var path = TrainStatePath(checkpoint);
        var recorded = RecordedTrainStateDigest(checkpoint);
        note = recorded is null ? $"{path} was written without {TrainStateDigestFile} (before VarSharp 0.1.0), so it was loaded unverified" : null;
        if (!File.Exists(path)) throw PathErrors.FileMissing(path, "Train state");
        var (state, metadata, sha, _) = SafeTensors.LoadHashed(path, _ => true);
        try
        {
            if (recorded is not null && sha != recorded) throw TrainStateAltered(path, sha, recorded);
            if (metadata is null || !metadata.TryGetValue("format", out var found) || found != format)
                throw new VarSharpException($"{path} is not a {what} train state (expected metadata format '{format}').");
            return (state, metadata);
        }
        catch
        {
            foreach (var t in state.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>The train-state metadata key holding the torch thread count the run trained with.</summary>
    public const string ThreadsKey = "threads";

    /// <summary>
    /// The thread count a checkpoint was trained with (null for checkpoints written before it was recorded). CPU kernels
    /// split reductions by thread count, so a resume equals an uninterrupted run bit for bit only with the same count.
    /// </summary>
    public static int? StoredThreads(string checkpoint)
    {
        var metadata = SafeTensors.ReadHeader(TrainStatePath(checkpoint)).Metadata;
        return metadata.TryGetValue(ThreadsKey, out var text) && int.TryParse(text, System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out int n) && n > 0 ? n : null;
    }

    /// <summary>The one-sentence error for a train state whose SHA-256 is not the recorded one.</summary>
    public static VarSharpException TrainStateAltered(string path, string actual, string recorded) =>
        new($"{path} has SHA-256 {actual} but {TrainStateDigestFile} records {recorded}, so the train state is corrupt or was altered; resume from another checkpoint.");

    /// <summary>The SHA-256 that <see cref="TrainStateDigestFile"/> records; null when the checkpoint has none (written before it existed).</summary>
    public static string? RecordedTrainStateDigest(string checkpoint)
    {
        var digestPath = Path.Combine(checkpoint, TrainStateDigestFile);
        if (!File.Exists(digestPath)) return null;
        var info = new FileInfo(digestPath);
        var parts = info.Length > 256 ? [] : File.ReadAllText(digestPath).TrimEnd('\n').Split("  ");
        if (parts.Length != 2 || parts[1] != TrainStateFile || parts[0].Length != 64 || !parts[0].All(char.IsAsciiHexDigitLower))
            throw new VarSharpException($"{digestPath} is not one line '<sha256>  {TrainStateFile}', so the train state cannot be verified.");
        return parts[0];
    }

    /// <summary>Writes a small text file atomically (temp file in the same folder, flushed, renamed over the target).</summary>
    public static void WriteText(string path, string text) => AtomicFile.Write(path, Encoding.UTF8.GetBytes(text));

    /// <summary>The folder of a run's checkpoints.</summary>
    public const string CheckpointsDir = "checkpoints";

    /// <summary>Loads a checkpoint's `prefix` weights into the module strictly, verifying its bundle as they are read.</summary>
    public static void LoadModelWeights(string checkpoint, nn.Module module, string prefix) =>
        LoadModelWeights(checkpoint, weights => ModuleWeights.LoadStrict(module, weights, prefix));

    /// <summary>Reads a checkpoint's verified weights and hands them to <paramref name="load"/>; its errors name the file.</summary>
    public static void LoadModelWeights(string checkpoint, Action<IReadOnlyDictionary<string, Tensor>> load)
    {
        using var files = ModelFiles.Read(ModelFolderOf(checkpoint), _ => true);
        try
        {
            load(files.Weights);
        }
        catch (VarSharpException e)
        {
            throw new VarSharpException($"{ModelPath(checkpoint)}: {e.Message}", e);
        }
    }

    /// <summary>
    /// The run folder a resumed run writes to: the given new folder (which must be empty or absent), or else the run
    /// folder that holds the checkpoint.
    /// </summary>
    public static string ResumeRunDir(string checkpoint, string? newRunDir)
    {
        if (newRunDir is not null)
        {
            var runDir = Path.GetFullPath(newRunDir);
            if (Directory.Exists(runDir) && Directory.EnumerateFileSystemEntries(runDir).Any())
                throw new VarSharpException($"Run folder {runDir} already exists and is not empty; choose a new output folder.");
            return runDir;
        }
        var parent = Path.GetDirectoryName(checkpoint)!;
        if (Path.GetFileName(parent) != CheckpointsDir)
            throw new VarSharpException($"The checkpoint {checkpoint} is not inside a run folder's {CheckpointsDir}/; give a new output folder for the resumed run.");
        return Path.GetDirectoryName(parent)!;
    }

    /// <summary>The checkpoint folder of <paramref name="step"/> in a run folder: checkpoints/step-NNNNNNN.</summary>
    public static string StepDir(string runDir, long step) => Path.Combine(runDir, CheckpointsDir, $"step-{step:D7}");

    /// <summary>A run folder's complete checkpoints, oldest first.</summary>
    public static List<(long Step, string Dir)> List(string runDir)
    {
        var dir = Path.Combine(runDir, CheckpointsDir);
        if (!Directory.Exists(dir)) return [];
        var result = new List<(long, string)>();
        foreach (var d in Directory.EnumerateDirectories(dir))
        {
            var name = Path.GetFileName(d);
            if (name.StartsWith("step-", StringComparison.Ordinal) && long.TryParse(name.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var s)
                && IsCheckpoint(d))
                result.Add((s, d));
        }
        return result.OrderBy(c => c.Item1).ToList();
    }

    /// <summary>The checkpoint folder a resume path names: a checkpoint itself, or a run folder's latest checkpoint.</summary>
    public static string Resolve(string path)
    {
        path = Path.GetFullPath(path);
        if (IsCheckpoint(path)) return path;
        if (Directory.Exists(Path.Combine(path, CheckpointsDir)))
        {
            var latest = List(path).LastOrDefault();
            if (latest.Dir is not null) return latest.Dir;
            throw new VarSharpException($"Run folder {path} has no complete checkpoint under {CheckpointsDir}/ to resume from.");
        }
        throw new VarSharpException(
            $"{path} is neither a checkpoint folder (model/ bundle + train_state.safetensors) nor a run folder with {CheckpointsDir}/.");
    }

    /// <summary>One int64 value of a train state, or a one-sentence error naming the file.</summary>
    public static long Scalar(IReadOnlyDictionary<string, Tensor> state, string key, string source)
    {
        if (!state.TryGetValue(key, out var t) || t.dtype != ScalarType.Int64 || t.numel() != 1)
            throw new VarSharpException($"{source} lacks '{key}' as one int64 value.");
        return t.item<long>();
    }

    /// <summary>Whether <paramref name="dir"/> holds a complete checkpoint (bundle manifest and train state present).</summary>
    public static bool IsCheckpoint(string dir) =>
        File.Exists(ConfigPath(dir)) && File.Exists(ModelPath(dir)) && ModelBundle.IsBundle(ModelFolderOf(dir)) && File.Exists(TrainStatePath(dir));
}
