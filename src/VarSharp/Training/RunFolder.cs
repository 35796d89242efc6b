using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Data;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// The rules every trainer's run folder follows, kept in one place so the tokenizer and the transformer runs cannot
/// drift apart: a new run never writes into a used folder; a resume is refused (before anything is written) when the
/// configs differ in a setting that may not change, when a later checkpoint would be shadowed, or when the data
/// changed; the train state stores the step and the data position the same way in every run; old checkpoints are
/// pruned, never the one just written; a failing plot is a warning, not the end of a long run.
/// </summary>
public static class RunFolder
{
    public const string ConfigFile = "run.json";
    public const string LogFile = "log.jsonl";
    public const string PlotFile = "loss.png";
    public const string SamplesDir = "samples";

    /// <summary>The full path of a folder a new run may use: it must not exist, or be empty.</summary>
    public static string ForNewRun(string runDir)
    {
        runDir = Path.GetFullPath(runDir);
        // A run.lock alone is no run (a trainer that lost the race for this folder, or a stale file); its holder, if
        // any, is found when the lock is taken.
        if (Directory.Exists(runDir) && Directory.EnumerateFileSystemEntries(runDir).Any(e => Path.GetFileName(e) != RunLock.FileName))
            throw new VarSharpException($"Run folder {runDir} already exists and is not empty; choose a new output folder, or continue that run with --resume {runDir}.");
        if (File.Exists(runDir)) throw new VarSharpException($"{runDir} is a file; expected a folder for the run.");
        return runDir;
    }

    /// <summary>
    /// Removes what a new run wrote before it failed without any checkpoint (run.json, a log without an end, its plot,
    /// grids, a token cache): nothing in it can be resumed, and leaving it would block starting again with the same
    /// --out. Only the names a run writes are removed, and a folder only when that leaves it empty; the run folder itself
    /// goes only when the run created it (<paramref name="existedBefore"/> false). Anything else found there stays.
    /// </summary>
    public static void Abandon(string runDir, bool existedBefore)
    {
        if (!Directory.Exists(runDir)) return;
        foreach (var name in new[] { ConfigFile, LogFile, PlotFile, RunLock.FileName })
            File.Delete(Path.Combine(runDir, name));
        foreach (var cache in Directory.EnumerateFiles(runDir, "tokens-*.safetensors")) File.Delete(cache);
        var samples = Path.Combine(runDir, SamplesDir);
        if (Directory.Exists(samples))
            foreach (var grid in Directory.EnumerateFiles(samples, "*step-*.png")) File.Delete(grid);
        foreach (var dir in new[] { samples, Path.Combine(runDir, CheckpointWriter.CheckpointsDir) })
            DeleteIfEmpty(dir);
        if (!existedBefore) DeleteIfEmpty(runDir);
    }

    private static void DeleteIfEmpty(string dir)
    {
        if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
    }

    /// <summary>
    /// Runs one training session. When it throws, the log gets an <c>end</c> line with the error, and a run started in
    /// this session that never wrote a checkpoint (<paramref name="newRunFolder"/>: whether its folder existed; null
    /// for a resumed run) closes its files (<paramref name="closeFiles"/>) and is removed with <see cref="Abandon"/>.
    /// </summary>
    public static T Guard<T>(Func<T> session, string runDir, TrainLog log, Func<long> step, Func<string?> lastCheckpoint,
        bool? newRunFolder, Action closeFiles)
    {
        try
        {
            return session();
        }
        catch (Exception e)
        {
            try
            {
                log.Write("end", step(), new Dictionary<string, JsonNode?> { ["finished"] = false, ["error"] = e.Message, ["checkpoint"] = lastCheckpoint() });
            }
            catch (Exception logFailure) when (logFailure is IOException or ObjectDisposedException)
            {
                // The original failure is the one to report.
            }
            if (newRunFolder is { } existed && lastCheckpoint() is null)
            {
                try
                {
                    closeFiles();
                    Abandon(runDir, existed);
                }
                catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
                {
                    // Left behind, but the failure to report is the run's own.
                }
            }
            throw;
        }
    }

    /// <summary>
    /// Creates the run folder with its checkpoints/ and samples/ folders and takes its <see cref="RunLock"/> before
    /// anything is written there; returns the lock (the caller holds it until the session ends) and the log's path.
    /// </summary>
    public static RunLock Create(string runDir, out string logPath, Action? recheck = null)
    {
        Directory.CreateDirectory(runDir);
        var runLock = RunLock.Acquire(runDir);
        // The checks made before the lock (an empty folder for a new run, no later checkpoint for a resume) are made
        // again while holding it: another trainer may have used the folder during this one's minutes of setup.
        try
        {
            try
            {
                recheck?.Invoke();
            }
            catch (VarSharpException e)
            {
                // Another trainer's work is in the folder now: said as the folder being in use, so that no caller
                // cleans up (deletes) what that trainer wrote.
                throw new RunFolderInUseException(e.Message);
            }
            var checkpoints = Directory.CreateDirectory(Path.Combine(runDir, CheckpointWriter.CheckpointsDir));
            // What a stopped session left half-made (a checkpoint being written, one being pruned) goes, as far as it
            // can; only the holder of the lock writes here, so nothing live can match.
            foreach (var stale in checkpoints.EnumerateDirectories(".step-*"))
                if (stale.Name.EndsWith(".tmp", StringComparison.Ordinal) || stale.Name.Contains(".deleting-", StringComparison.Ordinal))
                {
                    try { stale.Delete(recursive: true); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
                }
            Directory.CreateDirectory(Path.Combine(runDir, SamplesDir));
            logPath = Path.Combine(runDir, LogFile);
            return runLock;
        }
        catch
        {
            runLock.Dispose();
            throw;
        }
    }

    /// <summary>The fields every start line of a log carries about the process: who holds the run folder, since when.</summary>
    public static IEnumerable<KeyValuePair<string, JsonNode?>> ProcessFields() =>
    [
        new("pid", Environment.ProcessId),
        new("started", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture)),
        // What produced the run, for the record: the build (with its commit), the TorchSharp it ran on, the machine.
        new("varsharp", Version(typeof(RunFolder).Assembly)),
        new("torchsharp", Version(typeof(TorchSharp.torch).Assembly)),
        new("os", System.Runtime.InteropServices.RuntimeInformation.OSDescription),
        new("cpus", Environment.ProcessorCount),
        new("command", string.Join(' ', Environment.GetCommandLineArgs().Skip(1))),
    ];

    private static string Version(System.Reflection.Assembly assembly) =>
        assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion
        ?? assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>A seed of its own for one random stream of a run (weights, remedy, label dropout …), from the run's seed.</summary>
    public static ulong StreamSeed(ulong seed, ulong stream) => SplitMix.Keyed(seed, stream).Next() & 0x7FFF_FFFF_FFFF_FFFFUL;

    /// <summary>
    /// Refuses a resume whose requested model differs from the checkpoint's, or whose training settings differ in one
    /// outside <paramref name="changeable"/>. <paramref name="what"/> names the model ("tokenizer", "transformer");
    /// <paramref name="modelJson"/> is the model config's serializer options.
    /// </summary>
    public static void CheckResumeConfigs<TModel, TTrain>(string checkpoint, string what, TModel model, TModel storedModel,
        TTrain train, TTrain storedTrain, IReadOnlySet<string> changeable, JsonSerializerOptions? modelJson = null)
        where TModel : notnull where TTrain : notnull
    {
        if (!model.Equals(storedModel))
        {
            var (name, ours, theirs) = JsonConfig.Differences(model, storedModel, modelJson).FirstOrDefault(("config", "another", "its own"));
            throw new VarSharpException(
                $"The checkpoint {checkpoint} is a {what} with {name} {theirs} but this run asks for {ours}; resume with the checkpoint's settings or start a new run.");
        }
        foreach (var (name, ours, theirs) in JsonConfig.Differences(train, storedTrain).Where(d => !changeable.Contains(d.Name)))
            throw new VarSharpException(
                $"The checkpoint {checkpoint} was trained with {name} {theirs} but this run asks for {ours}; only {string.Join(", ", changeable.Order())} may change on resume.");
    }

    /// <summary>
    /// Refuses to resume <paramref name="checkpoint"/> (at <paramref name="checkpointStep"/>) when the run continues
    /// in place and a later checkpoint exists (its steps would be overwritten in the log and the pruning order), or when
    /// the checkpoint is already past the run's <paramref name="steps"/>.
    /// </summary>
    public static void CheckResumePoint(string runDir, string checkpoint, long checkpointStep, long steps, bool inPlace)
    {
        if (inPlace)
        {
            var newer = CheckpointWriter.List(runDir).Where(c => c.Step > checkpointStep).Select(c => c.Dir).FirstOrDefault();
            if (newer is not null)
                throw new VarSharpException(
                    $"Run folder {runDir} has a later checkpoint ({newer}) than the one to resume ({checkpoint}); resume from the latest, or give a new output folder.");
        }
        if (checkpointStep > steps)
            throw new VarSharpException($"The checkpoint {checkpoint} is at step {checkpointStep}, beyond the {steps} steps this run asks for.");
    }

    /// <summary>
    /// The train-state entries every run stores: the step, the next batch's position, the training set's size and its
    /// <see cref="IImageDataset.Fingerprint"/> (32 bytes).
    /// </summary>
    public static List<KeyValuePair<string, Tensor>> ProgressState(long step, DataPosition position, IImageDataset train) =>
    [
        new("step", tensor(step)),
        new("data.epoch", tensor(position.Epoch)),
        new("data.batch", tensor((long)position.Batch)),
        new("data.train_count", tensor((long)train.Count)),
        new("data.train_fingerprint", tensor(Convert.FromHexString(train.Fingerprint))),
    ];

    /// <summary>Reads <see cref="ProgressState"/> back, refusing a checkpoint trained on a training set of another size or content.</summary>
    public static (long Step, DataPosition Position) ReadProgress(IReadOnlyDictionary<string, Tensor> state, string source,
        string checkpoint, IImageDataset train)
    {
        long trainCount = CheckpointWriter.Scalar(state, "data.train_count", source);
        if (trainCount != train.Count)
            throw new VarSharpException(
                $"The checkpoint {checkpoint} was trained on {trainCount} images but {train.Description} has {train.Count}; the data changed.");
        // Checkpoints written before the fingerprint existed carry only the count.
        if (state.TryGetValue("data.train_fingerprint", out var stored)
            && !(stored.dtype == ScalarType.Byte && stored.numel() == 32 && Convert.ToHexStringLower(stored.contiguous().bytes) == train.Fingerprint))
            throw new VarSharpException(
                $"The checkpoint {checkpoint} was trained on other images than {train.Description} (same count, other files or content); the data changed.");
        var position = new DataPosition(CheckpointWriter.Scalar(state, "data.epoch", source), (int)CheckpointWriter.Scalar(state, "data.batch", source));
        return (CheckpointWriter.Scalar(state, "step", source), position);
    }

    /// <summary>
    /// What both trainers do once a checkpoint is in place: older ones beyond <paramref name="keep"/> go, and the log
    /// records the new one with the data position it resumes from.
    /// </summary>
    public static void Checkpointed(TrainLog log, string runDir, int keep, long step, string dir, DataPosition position)
    {
        Prune(runDir, keep, dir);
        log.Write("checkpoint", step, new Dictionary<string, System.Text.Json.Nodes.JsonNode?> { ["dir"] = dir, ["data_position"] = position.ToString() });
    }

    /// <summary>Deletes the run's checkpoints older than the newest <paramref name="keep"/>, never <paramref name="current"/>.</summary>
    public static void Prune(string runDir, int keep, string current)
    {
        foreach (var (_, old) in CheckpointWriter.List(runDir).SkipLast(keep))
        {
            if (old == current) continue;
            // Renamed out of the checkpoints' naming first, so a stop part-way through the deletion never leaves a
            // half-deleted folder that still looks like a checkpoint to a resume.
            var doomed = Path.Combine(Path.GetDirectoryName(old)!, $".{Path.GetFileName(old)}.deleting-{Guid.NewGuid():N}");
            Directory.Move(old, doomed);
            Directory.Delete(doomed, recursive: true);
        }
    }

    /// <summary>The (step, value) pairs of one numeric field of the log lines of one kind, for the loss plot after a resume.</summary>
    public static List<(long Step, double Value)> Series(IEnumerable<JsonObject> lines, string kind, string field)
    {
        var series = new List<(long, double)>();
        foreach (var o in lines)
            if (o["kind"]?.GetValue<string>() == kind && o[field] is JsonValue v && v.TryGetValue<double>(out var x))
                series.Add((TrainLog.StepOf(o), x));
        return series;
    }

    /// <summary>Runs <paramref name="writePlot"/>; a plotting failure (fonts, native libraries) becomes a warning line in the log.</summary>
    public static void TryPlot(TrainLog log, long step, Action writePlot)
    {
        try
        {
            writePlot();
        }
        catch (Exception e) when (e is IOException or VarSharpException or TypeInitializationException or DllNotFoundException or InvalidOperationException)
        {
            log.Write("warning", step, new Dictionary<string, JsonNode?> { ["plot"] = e.Message });
        }
    }
}
