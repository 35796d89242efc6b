using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VarSharp.Training;

/// <summary>
/// Where a run folder stands, read from its run.json, log.jsonl and lock, without touching anything: what it trains,
/// how far it got, its latest figures and checkpoint, and whether a trainer holds it right now.
/// </summary>
/// <param name="Kind">"tokenizer" or "transformer".</param>
/// <param name="State">"running" (a trainer holds the folder), "finished", "stopped" (ended before its last step; resume it),
/// "failed" (ended with an error), or "interrupted" (no end line: the process died; resume from the last checkpoint).</param>
public sealed record RunStatus(
    string RunDir, string Kind, string State, long Step, long TotalSteps, int Sessions, JsonObject? LastTrain, JsonObject? LastEval,
    string? LastCheckpoint, string? Error, double? StepsPerSecond, double? EtaSeconds)
{
    /// <summary>Reads the status of <paramref name="runDir"/>; a folder that is no run is a one-sentence <see cref="VarSharpException"/>.</summary>
    public static RunStatus Read(string runDir)
    {
        runDir = Path.GetFullPath(runDir);
        if (!Directory.Exists(runDir)) throw PathErrors.FolderMissing(runDir, "Run folder");
        var configPath = Path.Combine(runDir, RunFolder.ConfigFile);
        if (!File.Exists(configPath)) throw new VarSharpException($"{runDir} has no {RunFolder.ConfigFile}, so it is not a training run folder.");
        string kind;
        long total;
        using (var doc = Config.JsonConfig.ParseFile(configPath))
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new VarSharpException($"{configPath} is not a JSON object, so it is not a training run's config.");
            JsonElement block;
            if (root.TryGetProperty(VarTrainer.TrainBlock, out block)) kind = "transformer";
            else if (root.TryGetProperty("train_tokenizer", out block)) kind = "tokenizer";
            else throw new VarSharpException($"{configPath} has neither a '{VarTrainer.TrainBlock}' nor a 'train_tokenizer' block, so it is not a training run.");
            total = block.ValueKind == JsonValueKind.Object && block.TryGetProperty("steps", out var s) && s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out var n) ? n : 0;
        }

        var lines = TrainLog.Read(Path.Combine(runDir, RunFolder.LogFile));
        int lastStart = lines.FindLastIndex(l => KindOf(l) == "start");
        var session = lastStart < 0 ? lines : lines.Skip(lastStart).ToList();
        JsonObject? Last(IEnumerable<JsonObject> from, string k) => from.LastOrDefault(l => KindOf(l) == k);
        var train = Last(lines, "train");
        var end = Last(session, "end");
        var checkpoint = (string?)Last(lines, "checkpoint")?["dir"];
        long step = lines.Select(l => l["step"] is JsonValue v && v.TryGetValue<long>(out var x) ? x : 0).DefaultIfEmpty(0).Max();

        string state = RunLock.IsHeld(runDir) ? "running"
            : end is null ? "interrupted"
            : end["error"] is not null ? "failed"
            : end["finished"] is JsonValue f && f.GetValue<bool>() ? "finished"
            : "stopped";
        double? rate = train?["steps_per_s"] is JsonValue r ? r.GetValue<double>() : null;
        double? eta = state == "running" && rate is > 0 && total > step ? (total - step) / rate : null;
        return new RunStatus(runDir, kind, state, step, total, lines.Count(l => KindOf(l) == "start"), train, Last(lines, "eval"),
            checkpoint, (string?)end?["error"], rate, eta);
    }

    private static string? KindOf(JsonObject line) => line["kind"] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    /// <summary>Hours:minutes:seconds, hours unbounded (26:03:10 rather than 1.02:03:10).</summary>
    public static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Round(Math.Clamp(seconds, 0, 8.6e6)));
        return string.Create(CultureInfo.InvariantCulture, $"{(long)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}");
    }

    /// <summary>A few lines for a terminal.</summary>
    public string Describe()
    {
        static string F(JsonObject? o, string key, string format) =>
            o?[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d.ToString(format, CultureInfo.InvariantCulture) : "–";
        var lines = new List<string>
        {
            $"{RunDir}: {Kind} run, {State} at step {Step:N0} of {TotalSteps:N0} ({Sessions} session{(Sessions == 1 ? "" : "s")})",
        };
        if (LastTrain is { } t)
            lines.Add(Kind == "transformer"
                ? $"  last train line (step {t["step"]}): loss {F(t, "loss", "0.0000")}, accuracy {F(t, "acc_mean", "0.00")}%, {F(t, "steps_per_s", "0.00")} steps/s"
                : $"  last train line (step {t["step"]}): loss {F(t, "loss", "0.0000")} (reconstruction {F(t, "rec_loss", "0.0000")}, vq {F(t, "vq_loss", "0.0000")}), {F(t, "steps_per_s", "0.00")} steps/s");
        if (LastEval is { } e)
            lines.Add(Kind == "transformer"
                ? $"  last evaluation (step {e["step"]}): held-out loss {F(e, "loss_mean", "0.0000")}, accuracy {F(e, "acc_mean", "0.00")}%"
                : $"  last evaluation (step {e["step"]}): held-out PSNR {F(e, "psnr", "0.00")} dB");
        lines.Add(LastCheckpoint is null ? "  no checkpoint yet" : $"  last checkpoint: {LastCheckpoint}");
        if (EtaSeconds is { } eta) lines.Add($"  about {Duration(eta)} left at the last measured rate");
        if (Error is not null) lines.Add($"  ended with: {Error}");
        if (State is "stopped" or "interrupted" or "failed" && LastCheckpoint is not null)
            lines.Add($"  continue with: varsharp {(Kind == "transformer" ? "train" : "train-tokenizer")} --resume {RunDir}");
        return string.Join('\n', lines);
    }
}
