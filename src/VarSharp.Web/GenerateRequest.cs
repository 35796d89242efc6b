using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using Microsoft.AspNetCore.Http;
using VarSharp.Data;
using VarSharp.Sampling;

namespace VarSharp.Web;

/// <summary>A request the server refuses, with its HTTP status and one sentence for the client.</summary>
public sealed class ApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>A validated generation request: every value resolved (defaults filled in) and usable with its model.</summary>
public sealed record GenerationParams(ServedModel Model, int? Class, int Count, double Cfg, int TopK, double TopP, long Seed, bool MoreSmooth,
    EditRequest? Edit = null)
{
    public SamplerSettings Settings => new() { Cfg = Cfg, TopK = TopK, TopP = TopP, MoreSmooth = MoreSmooth };
}

/// <summary>A validated <c>edit</c>: the library's edit and the box it came from (echoed in responses).</summary>
public sealed record EditRequest(ImageEdit Edit, int[] Box, bool Outpaint);

/// <summary>
/// Reads a generation request from a JSON body or a query string with the same field names (snake_case), checking
/// types, ranges and the model's limits, and answering each problem with a 400 and one sentence. Unknown fields are
/// refused so that a typo (<c>topk</c>) is not silently ignored.
/// </summary>
public static class GenerateRequest
{
    public static readonly string[] Fields = ["model", "class", "count", "cfg", "top_k", "top_p", "seed", "more_smooth", "edit"];

    private static readonly string[] EditFields = ["image", "box", "outpaint", "known_threshold"];

    /// <summary>Seeds stay within JavaScript's exact integers so that a page can hand them back unchanged.</summary>
    public const long MaxSeed = 9_007_199_254_740_991;

    private const int BaseBodyBytes = 64 * 1024;

    /// <summary>
    /// 64 KiB, plus room for an edit image of the largest served model: 8 bytes per pixel covers a PNG of it in base64
    /// even as 8-bit RGBA whatever the model's channels (a browser canvas exports RGBA; 4 bytes raw, 4/3 in base64, and
    /// room for PNG's worst case on noise), and the 64 KiB the headers of a small one.
    /// </summary>
    public static int MaxBodyBytes(ModelRegistry models) =>
        BaseBodyBytes + 8 * models.Models.Max(m => m.ImageSize * m.ImageSize);

    /// <summary>Reads and validates a JSON body.</summary>
    public static async Task<GenerationParams> FromBodyAsync(HttpRequest request, ModelRegistry models, ServeOptions options, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int n, cap = MaxBodyBytes(models);
        if (request.ContentLength > cap) throw TooLarge(cap);
        try
        {
            while ((n = await request.Body.ReadAsync(chunk, ct)) > 0)
            {
                if (buffer.Length + n > cap) throw TooLarge(cap);
                buffer.Write(chunk, 0, n);
            }
        }
        // Kestrel's own refusals (a body that stalls, ends early or passes its size limit) keep their status but get
        // our JSON sentence; a client that resets mid-upload is a cancellation, not a server error.
        catch (BadHttpRequestException e)
        {
            throw new ApiException(e.StatusCode, $"the request body could not be read: {e.Message.TrimEnd('.')}.");
        }
        catch (IOException) when (ct.IsCancellationRequested)
        {
            throw new OperationCanceledException(ct);
        }
        // A UTF-8 byte order mark (what some editors save) is not JSON; the Stream parsers skip it, the byte one does not.
        var body = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (body.StartsWith("\uFEFF"u8)) body = body[3..];
        if (body.Length == 0) throw Bad("the request body is empty; send a JSON object such as {\"class\": 3}.");
        return Validate(ParseObject(body.ToArray()), models, options);
    }

    private static ApiException TooLarge(int cap) => new(StatusCodes.Status413PayloadTooLarge, $"the request body is larger than {cap / 1024} KiB.");

    /// <summary>
    /// The body as a JSON object. Checked here rather than left to JsonNode, which reads lazily and would fail later,
    /// outside any validation, on a field given twice or on text that is not UTF-8.
    /// </summary>
    private static JsonObject ParseObject(byte[] body)
    {
        if (!Utf8.IsValid(body)) throw Bad("the request body is not valid UTF-8 text.");
        try
        {
            using var doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad("the request body must be a JSON object such as {\"class\": 3}.");
            CheckNames(doc.RootElement, "");
            return JsonObject.Create(doc.RootElement.Clone())!;
        }
        catch (JsonException e)
        {
            throw Bad($"the request body is not valid JSON ({FirstSentence(e.Message)}).");
        }
        catch (InvalidOperationException)
        {
            // A name or string holding an escape such as \ud800 (half of a UTF-16 pair) is valid JSON syntax but no text.
            throw Bad("the request body holds a string that is not valid Unicode (a lone surrogate escape such as \\ud800).");
        }
    }

    /// <summary>
    /// Every object of the body, nested ones (the edit) included: no name given twice, and every name and string
    /// decodable (see below) — both would otherwise fail later, inside JsonNode, as a 500.
    /// </summary>
    private static void CheckNames(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var p in element.EnumerateObject())
                {
                    if (!seen.Add(p.Name)) throw Bad($"the field '{Clip(path + p.Name)}' is given twice; give each field once.");
                    CheckNames(p.Value, path + p.Name + ".");
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray()) CheckNames(item, path);
                break;
            case JsonValueKind.String:
                _ = element.GetString();   // decodes escapes
                break;
        }
    }

    /// <summary>Reads and validates a query string (numbers and true/false as text).</summary>
    public static GenerationParams FromQuery(IQueryCollection query, ModelRegistry models, ServeOptions options)
    {
        var obj = new JsonObject();
        foreach (var (key, values) in query)
        {
            if (values.Count != 1) throw Bad($"query parameter '{key}' is given {values.Count} times; give it once.");
            if (key == "edit") throw Bad("'edit' is accepted only in a POST body, since an image does not fit in a URL.");
            obj[key] = QueryValue(values[0] ?? "");
        }
        return Validate(obj, models, options);
    }

    private static JsonNode? QueryValue(string text)
    {
        if (text.Length == 0 || text == "null") return null;
        if (text is "true" or "false") return JsonValue.Create(text == "true");
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
        {
            try
            {
                // Parsed as JSON so that the value reads back exactly as a body's number would.
                if (JsonNode.Parse(text) is JsonValue number) return number;
            }
            catch (JsonException)
            {
                // "+5", ".5" and the like are numbers to .NET but not to JSON: left as text, refused as not a number.
            }
        }
        return JsonValue.Create(text);
    }

    /// <summary>Checks every field of <paramref name="obj"/> and resolves defaults against the named model.</summary>
    public static GenerationParams Validate(JsonObject obj, ModelRegistry models, ServeOptions options)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (key, _) in obj)
            if (!Fields.Contains(key, StringComparer.Ordinal))
                throw Bad($"unknown field '{Clip(key)}'; the fields are {string.Join(", ", Fields)}.");

        ServedModel model;
        if (obj["model"] is null)
        {
            model = models.Default;
        }
        else
        {
            var name = String(obj, "model");
            model = models.Find(name) ?? throw Bad($"unknown model '{Clip(name)}'; this server has {string.Join(", ", models.Models.Select(m => m.Name))}.");
        }

        int? cls = null;
        if (obj["class"] is JsonValue cv)
        {
            if (cv.GetValueKind() == JsonValueKind.String)
            {
                var name = cv.GetValue<string>();
                int idx = model.ClassNames.ToList().FindIndex(c => string.Equals(c, name, StringComparison.OrdinalIgnoreCase));
                if (idx < 0 && VarPipeline.UnconditionalNames.Contains(name, StringComparer.OrdinalIgnoreCase)) idx = model.Pipeline.UnconditionalClass;
                if (idx < 0) throw Bad($"class '{Clip(name)}' is not a class of model '{model.Name}'; give an id from 0 to {model.NumClasses - 1}, one of its names, or -1 for unconditional.");
                cls = idx;
            }
            else
            {
                long c = Integer(obj, "class");
                // -1 asks for the null class; its id num_classes (as responses report it) is taken back too.
                if (c != -1 && (c < 0 || c > model.NumClasses))
                    throw Bad($"class {c} is out of range: model '{model.Name}' has classes 0 to {model.NumClasses - 1} (and -1 samples unconditionally).");
                cls = c == -1 ? model.Pipeline.UnconditionalClass : (int)c;
            }
        }
        else if (obj["class"] is not null)
        {
            throw Bad("'class' must be a class id (an integer) or a class name.");
        }

        long count = obj["count"] is null ? 1 : Integer(obj, "count");
        if (count < 1 || count > options.MaxCount)
            throw Bad($"count must be between 1 and {options.MaxCount} (this server's cap), found {count}.");

        double cfg = obj["cfg"] is null ? model.DefaultCfg : Number(obj, "cfg");
        if (!(cfg >= 0) || double.IsInfinity(cfg)) throw Bad($"cfg must be a finite number ≥ 0, found {Fmt(cfg)}.");
        if (cfg > 1000) throw Bad($"cfg must be at most 1000, found {Fmt(cfg)}.");

        long topK = obj["top_k"] is null ? model.DefaultTopK : Integer(obj, "top_k");
        if (topK < 0 || topK > model.VocabSize)
            throw Bad($"top_k must be between 0 (off) and the vocabulary size {model.VocabSize}, found {topK}.");

        double topP = obj["top_p"] is null ? model.DefaultTopP : Number(obj, "top_p");
        if (!(topP >= 0 && topP <= 1)) throw Bad($"top_p must be in [0, 1] (0 is off), found {Fmt(topP)}.");

        long seed = obj["seed"] is null ? Random.Shared.NextInt64(0, 1L << 31) : Integer(obj, "seed");
        if (seed < 0 || seed > MaxSeed - options.MaxCount)
            throw Bad($"seed must be between 0 and {MaxSeed - options.MaxCount}, found {seed}.");

        bool smooth = obj["more_smooth"] is not null && Bool(obj, "more_smooth");

        EditRequest? edit = obj["edit"] switch
        {
            null => null,
            JsonObject e => ParseEdit(e, model),
            _ => throw Bad("'edit' must be an object such as {\"image\": \"<base64 PNG>\", \"box\": [8, 8, 24, 24]}."),
        };

        var result = new GenerationParams(model, cls, (int)count, cfg, (int)topK, topP, seed, smooth, edit);
        try
        {
            result.Settings.Validate(model.Pipeline.Model.Config);
        }
        catch (VarSharpException e)
        {
            throw Bad(e.Message);
        }
        return result;
    }

    private static EditRequest ParseEdit(JsonObject e, ServedModel model)
    {
        foreach (var (key, _) in e)
            if (!EditFields.Contains(key, StringComparer.Ordinal))
                throw Bad($"unknown field 'edit.{Clip(key)}'; the edit fields are {string.Join(", ", EditFields)}.");
        if (e["image"] is null) throw Bad("'edit.image' is missing: give the image to edit as base64 PNG or JPEG.");
        var base64 = StringOf(e["image"], "edit.image");
        var bytes = new byte[base64.Length * 3 / 4 + 3];
        if (!Convert.TryFromBase64String(base64, bytes, out int length)) throw Bad("'edit.image' is not base64 text.");
        if (e["box"] is not JsonArray box || box.Count != 4)
            throw Bad("'edit.box' must be an array of four integers [x0, y0, x1, y1], the pixels to regenerate.");
        var b = new int[4];
        for (int i = 0; i < 4; i++)
        {
            long v = IntegerOf(box[i], $"edit.box[{i}]");
            if (v < int.MinValue || v > int.MaxValue) throw Bad($"'edit.box[{i}]' is out of range, found {v}.");
            b[i] = (int)v;
        }
        bool outpaint = e["outpaint"] is not null && BoolOf(e["outpaint"], "edit.outpaint");
        double threshold = e["known_threshold"] is null ? 0.5 : NumberOf(e["known_threshold"], "edit.known_threshold");
        var png = bytes[..length];
        // The size its header declares, before any decoding: a small file may declare (and would allocate) gigabytes.
        var (w, h) = ImageIO.DeclaredSize(png) ?? throw Bad("'edit.image' is not a readable PNG or JPEG image (no image header).");
        if (w != model.ImageSize || h != model.ImageSize)
            throw Bad($"'edit.image' is {w}×{h} but model '{model.Name}' makes {model.ImageSize}×{model.ImageSize} images.");
        try
        {
            using var image = ImageIO.Decode(png, model.Channels, "'edit.image'");
            var edit = ImageEdit.Box(image, b[0], b[1], b[2], b[3], outpaint, threshold);
            // Checks the mask too (a box too small to free a token at any scale), without encoding the image: that, like
            // all model work, happens in the batcher.
            edit.Validate(model.Pipeline.Tokenizer);
            return new EditRequest(edit, b, outpaint);
        }
        catch (VarSharpException ex)
        {
            throw Bad(ex.Message);
        }
    }

    private static ApiException Bad(string message) => new(StatusCodes.Status400BadRequest, message);

    private static string String(JsonObject obj, string key) => StringOf(obj[key], key);
    private static long Integer(JsonObject obj, string key) => IntegerOf(obj[key], key);
    private static double Number(JsonObject obj, string key) => NumberOf(obj[key], key);
    private static bool Bool(JsonObject obj, string key) => BoolOf(obj[key], key);

    private static string StringOf(JsonNode? node, string name) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Bad($"'{name}' must be a string, found {Kind(node)}.");

    private static long IntegerOf(JsonNode? node, string name)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue<long>(out var l)) return l;
            // 9e15 or 2.0: an integer written as a float. Beyond ±2^63 it is out of any range the fields allow.
            if (!v.TryGetValue<double>(out var d)) throw Bad($"'{name}' is out of range.");
            if (Math.Floor(d) != d) throw Bad($"'{name}' must be an integer, found {Fmt(d)}.");
            if (Math.Abs(d) >= 9.2e18) throw Bad($"'{name}' is out of range, found {Fmt(d)}.");
            return (long)d;
        }
        throw Bad($"'{name}' must be an integer, found {Kind(node)}.");
    }

    private static double NumberOf(JsonNode? node, string name)
    {
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) throw Bad($"'{name}' must be a number, found {Kind(node)}.");
        // 1e400 is valid JSON but no double.
        return v.TryGetValue<double>(out var d) ? d : throw Bad($"'{name}' is out of range.");
    }

    private static bool BoolOf(JsonNode? node, string name) =>
        node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : throw Bad($"'{name}' must be true or false, found {Kind(node)}.");

    private static string Kind(JsonNode? node) => node?.GetValueKind() switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };

    private static string Fmt(double v) => v.ToString("g", CultureInfo.InvariantCulture);

    private static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";

    private static string FirstSentence(string message)
    {
        int dot = message.IndexOf(". ", StringComparison.Ordinal);
        return (dot > 0 ? message[..dot] : message).TrimEnd('.');
    }
}
