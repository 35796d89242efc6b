using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VarSharp.Training;

/// <summary>
/// The JSON-lines log of a run: one object per line, each with "kind" (start, train, eval, remedy, checkpoint, end)
/// and "step". Lines are appended and flushed as they happen, so the file can be followed while the run goes on.
/// </summary>
public sealed class TrainLog : IDisposable
{
    private readonly StreamWriter writer;

    public TrainLog(string path)
    {
        FilePath = path;
        writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
    }

    public string FilePath { get; }

    public void Write(string kind, long step, IEnumerable<KeyValuePair<string, JsonNode?>> fields)
    {
        var obj = new JsonObject { ["kind"] = kind, ["step"] = step };
        foreach (var (k, v) in fields) obj[k] = v;
        writer.WriteLine(obj.ToJsonString());
    }

    /// <summary>Reads a log, skipping blank or unparsable lines (a line cut by a crash).</summary>
    public static List<JsonObject> Read(string path)
    {
        var result = new List<JsonObject>();
        if (!File.Exists(path)) return result;
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                if (JsonNode.Parse(line) is JsonObject o) result.Add(o);
            }
            catch (JsonException) { }
        }
        return result;
    }

    /// <summary>Rewrites a log keeping only the lines at or before <paramref name="step"/> (used when a run resumes).</summary>
    public static void TruncateAfter(string path, long step)
    {
        if (!File.Exists(path)) return;
        var kept = Read(path).Where(o => StepOf(o) <= step).Select(o => o.ToJsonString());
        CheckpointWriter.WriteText(path, string.Concat(kept.Select(l => l + "\n")));
    }

    public static long StepOf(JsonObject o) => o["step"] is JsonValue v && v.TryGetValue<long>(out var s) ? s : long.MaxValue;

    public static JsonNode Number(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 6)) : JsonValue.Create(v.ToString(CultureInfo.InvariantCulture));

    public static JsonArray Numbers(IEnumerable<double> values) => new(values.Select(v => (JsonNode?)Number(v)).ToArray());

    public void Dispose() => writer.Dispose();
}
