using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Data;
using VarSharp.Sampling;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>
/// The output folder of one `sample` run, written batch by batch so that a large run (tens of thousands of images for a
/// Fréchet distance) neither holds every image in memory nor loses finished work when it stops: each batch's PNGs, then
/// their lines in samples.jsonl. Run again with the same settings into the same folder, it keeps every image whose line
/// matches (same model weights, seed, class, guidance and filters) and whose file is there, and samples only the rest;
/// with per-sample seeds image i depends on nothing else, so the folder ends exactly as one uninterrupted run leaves it.
/// grid.png shows the first --grid-max images.
/// </summary>
internal sealed class SampleRun
{
    public const int DefaultGridMax = 256;
    private const string LogFile = "samples.jsonl";

    private readonly string _dir;
    private readonly VarPipeline _pipe;
    private readonly SampleOptions _options;
    private readonly int _gridMax, _total, _digits, _topK;
    private readonly int[]? _labels;
    private readonly Dictionary<int, JsonObject> _previous = [];
    private readonly List<JsonObject> _earlierLines = [];
    private readonly SortedDictionary<int, string> _lines = [];
    private readonly SortedDictionary<int, Func<Tensor>> _grid = [];
    private readonly SortedSet<int> _classes = [];

    private readonly object? _edit;
    private readonly string? _precision;

    /// <param name="edit">What an edit was made from (recorded in every line), or null.</param>
    public SampleRun(string dir, VarPipeline pipe, SampleOptions options, int gridMax, object? edit = null)
    {
        _edit = edit;
        if (gridMax < 0) throw new VarSharpException($"--grid-max must be 0 (no grid) or more but is {gridMax}.");
        _dir = dir;
        _pipe = pipe;
        _options = options;
        _gridMax = gridMax;
        _labels = options.Classes?.SelectMany(c => Enumerable.Repeat(c, options.Count)).ToArray();
        _total = _labels?.Length ?? options.Count;
        _digits = Math.Max(3, (_total - 1).ToString(CultureInfo.InvariantCulture).Length);
        _topK = options.ResolveTopK(pipe.VocabSize);
        var dtype = pipe.Model.parameters().First().dtype;
        _precision = dtype == ScalarType.Float32 ? null : dtype == ScalarType.BFloat16 ? "bf16" : dtype == ScalarType.Float16 ? "f16" : dtype.ToString().ToLowerInvariant();
        ReadPrevious();
    }

    /// <summary>Whether earlier images can be kept: each has its own seed, and no edit (whose image is not recorded) is involved.</summary>
    public bool Resumable => _options.PerSampleSeeds && _options.Edit is null && _pipe.WeightsSha256 is not null;

    /// <summary>Images kept from an earlier run.</summary>
    public int Kept { get; private set; }

    public string ClassList => string.Join(",", _classes);

    public string GridNote => _gridMax == 0 ? " (not written: --grid-max 0)" : _total > _gridMax ? $" (the first {_gridMax} of {_total} images)" : "";

    /// <summary>True, and the image is kept, when an earlier run left image <paramref name="index"/> with this run's settings.</summary>
    public bool AlreadyDone(int index)
    {
        if (!_previous.TryGetValue(index, out var line)) return false;
        if (line["file"] is not JsonValue fv || !fv.TryGetValue(out string? file) || line["class"] is not JsonValue cv || !cv.TryGetValue(out int c)
            || c < 0 || c > _pipe.UnconditionalClass || (_labels is not null && _labels[index] != c) || file != FileName(index, c))
            return false;
        // The settings must be this run's, and the files the very ones the line was written for (a run with other
        // settings may have overwritten them and stopped before writing its own lines).
        var settings = (JsonObject)line.DeepClone();
        var png = Take(settings, "png_sha256");
        var strip = Take(settings, "scales_sha256");
        if (settings.ToJsonString() != Line(index, c, _options.Seed + index, file)
            || !Matches(file, png) || (_options.Scales && !Matches(StripName(file), strip)))
            return false;
        _lines[index] = line.ToJsonString();
        _classes.Add(c);
        if (index < _gridMax)
        {
            var path = Path.Combine(_dir, file!);
            int channels = _pipe.Tokenizer.Config.InChannels;
            _grid[index] = () =>
            {
                using var img = ImageIO.Load(path, channels);
                return img[0].clone();
            };
        }
        Kept++;
        return true;
    }

    /// <summary>
    /// How many images of an earlier run, still there unchanged, this run would overwrite with other settings: their
    /// index is one this run writes and their log line is not what this run would write (with drawn classes the file
    /// name is not known ahead, so any such index counts).
    /// </summary>
    public int Conflicts()
    {
        // The latest line of each file describes it (lines of other files may share its index: other classes).
        var latest = new Dictionary<string, (int Index, JsonObject Line)>(StringComparer.Ordinal);
        foreach (var o in _earlierLines)
            if (o["index"] is JsonValue v && v.TryGetValue(out int i) && i >= 0 && i < _total
                && o["file"] is JsonValue fv && fv.TryGetValue(out string? f) && f is not null && f == Path.GetFileName(f))
                latest[f] = (i, o);
        int conflicts = 0;
        foreach (var (file, (i, line)) in latest)
        {
            // Only a file this run writes can be overwritten: its name for a given class, any class's for drawn ones.
            if (_labels is not null ? file != FileName(i, _labels[i]) : !file.StartsWith(FileName(i, 0)[..^"0.png".Length], StringComparison.Ordinal))
                continue;
            var settings = (JsonObject)line.DeepClone();
            if (!Matches(file, Take(settings, "png_sha256"))) continue;   // gone or changed already: nothing left to lose
            Take(settings, "scales_sha256");
            int cls = _labels?[i] ?? (settings["class"] is JsonValue cv && cv.TryGetValue(out int c) ? c : 0);
            var ours = JsonNode.Parse(Line(i, cls, _options.PerSampleSeeds ? _options.Seed + i : null, FileName(i, cls)))!.AsObject();
            if (_labels is null)
                foreach (var key in new[] { "file", "class", "class_name" })
                {
                    settings.Remove(key);
                    ours.Remove(key);
                }
            if (settings.ToJsonString() != ours.ToJsonString()) conflicts++;
        }
        return conflicts;
    }

    /// <summary>Writes one batch: every image (and strip), then its lines appended to samples.jsonl.</summary>
    public void Write(IReadOnlyList<GeneratedImage> batch)
    {
        var appended = new StringBuilder();
        foreach (var im in batch)
        {
            var file = FileName(im.Index, im.Class);
            im.Save(Path.Combine(_dir, file));
            if (im.ScalesPng is { } strip) ImageIO.WriteAtomically(Path.Combine(_dir, StripName(file)), strip);
            var line = JsonNode.Parse(Line(im.Index, im.Class, im.Seed, file))!.AsObject();
            line["png_sha256"] = Sha256(im.Png);
            if (im.ScalesPng is { } s) line["scales_sha256"] = Sha256(s);
            var text = line.ToJsonString();
            _lines[im.Index] = text;
            _classes.Add(im.Class);
            appended.Append(text).Append('\n');
            if (im.Index < _gridMax)
            {
                // Only the pixels: the PNGs of a large grid would otherwise stay in memory too.
                var (pixels, c, h, w) = (im.Pixels, im.Channels, im.Height, im.Width);
                _grid[im.Index] = () => ImageIO.FromPixels(pixels, c, h, w);
            }
        }
        // Appended, not rewritten, so a stop between batches keeps every finished line for the next run; a line cut off
        // by an earlier stop is ended first so that it cannot swallow the next one.
        var path = Path.Combine(_dir, LogFile);
        if (File.Exists(path) && new FileInfo(path).Length > 0)
        {
            using var f = File.OpenRead(path);
            f.Seek(-1, SeekOrigin.End);
            if (f.ReadByte() != '\n') appended.Insert(0, '\n');
        }
        File.AppendAllText(path, appended.ToString());
    }

    private string FileName(int index, int cls) => $"{index.ToString("D" + _digits, CultureInfo.InvariantCulture)}-class{cls}.png";

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));

    private static string? Take(JsonObject o, string key)
    {
        var v = o[key] is JsonValue j && j.TryGetValue(out string? s) ? s : null;
        o.Remove(key);
        return v;
    }

    private bool Matches(string file, string? sha)
    {
        var path = Path.Combine(_dir, file);
        return sha is not null && File.Exists(path) && Checkpoints.FileDigest.Sha256(path) == sha;
    }

    /// <summary>
    /// Rewrites samples.jsonl in index order (atomically) and writes grid.png. The log describes the folder's images:
    /// this run's, and those of earlier runs that this one did not overwrite (a larger earlier run, other classes, other
    /// file names), as long as their files are still there unchanged.
    /// </summary>
    public void Finish()
    {
        var written = _lines.Values.Select(l => JsonNode.Parse(l)!["file"]!.GetValue<string>()).ToHashSet(StringComparer.Ordinal);
        // At an equal index this run's line comes last: a rerun takes the last line of an index as the one to resume.
        var lines = _lines.Select(kv => (Index: kv.Key, Earlier: false, File: "", Text: kv.Value)).ToList();
        foreach (var earlier in Enumerable.Reverse(_earlierLines))   // the latest line of a file first
        {
            if (earlier["file"] is not JsonValue fv || !fv.TryGetValue(out string? file) || file is null || written.Contains(file)
                || file != Path.GetFileName(file) || !Matches(file, earlier["png_sha256"] is JsonValue pv && pv.TryGetValue(out string? sha) ? sha : null))
                continue;
            written.Add(file);
            lines.Add((earlier["index"] is JsonValue iv && iv.TryGetValue(out int i) ? i : int.MaxValue, true, file, earlier.ToJsonString()));
        }
        var log = new StringBuilder();
        foreach (var (_, _, _, text) in lines.OrderBy(l => l.Index).ThenByDescending(l => l.Earlier).ThenBy(l => l.File, StringComparer.Ordinal))
            log.Append(text).Append('\n');
        ImageIO.WriteAtomically(Path.Combine(_dir, LogFile), Encoding.UTF8.GetBytes(log.ToString()));
        if (_gridMax == 0 || _grid.Count == 0) return;
        using var scope = NewDisposeScope();
        var batch = stack(_grid.Values.Select(load => load()).ToArray(), 0);
        // Several classes with several images each: one row per class; otherwise a square-ish grid.
        int columns = _options.Classes is { Length: > 1 } && _options.Count > 1 ? _options.Count : (int)Math.Ceiling(Math.Sqrt(_grid.Count));
        ImageIO.WriteAtomically(Path.Combine(_dir, "grid.png"), ImageIO.EncodePng(ImageIO.Grid(batch, columns)));
    }

    private static string StripName(string file) => Path.GetFileNameWithoutExtension(file) + "-scales.png";

    private string Line(int index, int cls, long? seed, string file)
    {
        var text = LineOf(index, cls, seed, file);
        if (_precision is null) return text;
        // A half-precision transformer samples other images: recorded, so that a rerun in float32 does not take them.
        var node = JsonNode.Parse(text)!.AsObject();
        node["precision"] = _precision;
        return node.ToJsonString();
    }

    private string LineOf(int index, int cls, long? seed, string file) => JsonSerializer.Serialize(new
    {
        file,
        index,
        @class = cls,
        class_name = _pipe.ClassName(cls),
        seed,
        shared_seed = seed is null ? _options.Seed : (long?)null,
        cfg = _options.Cfg,
        top_k = _topK,
        top_p = _options.TopP,
        more_smooth = _options.MoreSmooth,
        edited = _options.Edit is not null,
        edit = _edit,
        model_sha256 = _pipe.WeightsSha256,
    });

    private void ReadPrevious()
    {
        var path = Path.Combine(_dir, LogFile);
        if (!File.Exists(path)) return;
        foreach (var text in File.ReadLines(path))
        {
            try
            {
                // The last line of an index wins: a rerun with other settings appends its own. Only a resumable run
                // keeps earlier images; every run keeps earlier lines of images it does not overwrite (Finish).
                if (JsonNode.Parse(text) is not JsonObject o) continue;
                _earlierLines.Add(o);
                if (Resumable && o["index"]?.GetValue<int>() is { } i && i >= 0 && i < _total) _previous[i] = o;
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
            {
                // A line cut off by a stop mid-write, or not ours: that image is sampled again.
            }
        }
    }
}
