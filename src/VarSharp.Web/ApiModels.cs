using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using VarSharp.Sampling;

namespace VarSharp.Web;

/// <summary>The JSON conventions of the API: snake_case names, nulls left out, compact.</summary>
public static class ApiJson
{
    public static JsonSerializerOptions Options { get; } = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Configure(JsonSerializerOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        o.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        o.DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull;
        o.WriteIndented = false;
        // Plain JSON for an API (no HTML-safe escaping of ', + or non-ASCII): smaller base64, readable messages.
        o.Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;
        return o;
    }
}

/// <summary>The body of <c>POST /v1/generate</c> (documentation only: the server reads it field by field to answer each mistake clearly).</summary>
public sealed record GenerateRequestBody(
    string? Model = null,
    int? Class = null,
    int? Count = null,
    double? Cfg = null,
    int? TopK = null,
    double? TopP = null,
    long? Seed = null,
    bool? MoreSmooth = null,
    EditRequestBody? Edit = null);

/// <summary>
/// The optional <c>edit</c> field of a POST body: complete an image instead of drawing one from scratch. The box
/// [x0, y0, x1, y1) in pixels is regenerated (in-painting), or with <c>outpaint</c> everything outside it.
/// </summary>
/// <param name="Image">PNG or JPEG, base64, of exactly the model's image size.</param>
/// <param name="Box">x0, y0, x1, y1 with 0 ≤ x0 &lt; x1 ≤ size and 0 ≤ y0 &lt; y1 ≤ size.</param>
/// <param name="KnownThreshold">A token is kept from the image when at least this share of its cell is kept (0.5).</param>
public sealed record EditRequestBody(string Image, int[] Box, bool? Outpaint = null, double? KnownThreshold = null);

/// <summary>What an edit request asked for, echoed without its image.</summary>
public sealed record EditDto(int[] Box, bool Outpaint, double KnownThreshold);

/// <summary>The resolved parameters of a request: what it asked for with every default filled in.</summary>
public sealed record ParamsDto(string Model, int? Class, string? ClassName, int Count, double Cfg, int TopK, double TopP, long Seed, bool MoreSmooth,
    EditDto? Edit = null)
{
    public static ParamsDto From(GenerationParams p) => new(
        p.Model.Name, p.Class, p.Class is { } c ? p.Model.Pipeline.ClassName(c) : null, p.Count, p.Cfg, p.TopK, p.TopP, p.Seed, p.MoreSmooth,
        p.Edit is { } e ? new EditDto(e.Box, e.Outpaint, e.Edit.KnownThreshold) : null);
}

/// <summary>One image: its class, its own seed (request seed + index; alone with count 1 it gives the same image), and base64 PNG bytes.</summary>
public sealed record ImageDto(int Index, int Class, string ClassName, long Seed, int Width, int Height, int Channels, string Png)
{
    public static ImageDto From(GeneratedImage im, ServedModel model) => new(
        im.Index, im.Class, model.Pipeline.ClassName(im.Class), im.Seed ?? 0, im.Width, im.Height, im.Channels, Convert.ToBase64String(im.Png));
}

/// <summary>Where a request's time went: waiting in the queue, sampling its batch, and the batch it shared.</summary>
public sealed record TimingDto(double QueuedMs, double SampleMs, double TotalMs, int BatchImages, int BatchRequests);

/// <summary>The answer of <c>POST /v1/generate</c> and the data of the stream's <c>done</c> event.</summary>
public sealed record GenerateResponse(ParamsDto Params, IReadOnlyList<ImageDto> Images, TimingDto Timing);

/// <summary>The stream's first event: the resolved parameters and the scales to expect.</summary>
public sealed record StartEvent(ParamsDto Params, IReadOnlyList<int> PatchNums, int ImageSize);

/// <summary>The stream's <c>scale</c> event: every image of the request decoded after scale <see cref="Index"/> (0-based).</summary>
public sealed record ScaleEvent(int Index, int NumScales, int PatchSize, IReadOnlyList<ScaleImageDto> Images);

public sealed record ScaleImageDto(int Index, string Png);

/// <summary>Every error: one sentence (and in a stream, the HTTP status it would have had).</summary>
public sealed record ErrorDto(string Error, int? Status = null);

public sealed record DefaultsDto(int Count, double Cfg, int TopK, double TopP);

public sealed record ModelDto(
    string Name, int ImageSize, int Channels, int NumClasses, IReadOnlyList<string> ClassNames, int VocabSize,
    IReadOnlyList<int> PatchNums, DefaultsDto Defaults, int MaxCount, ModelIntegrity Integrity)
{
    public static ModelDto From(ServedModel m, ServeOptions o) => new(
        m.Name, m.ImageSize, m.Channels, m.NumClasses, m.ClassNames, m.VocabSize, m.PatchNums,
        new DefaultsDto(1, m.DefaultCfg, m.DefaultTopK, m.DefaultTopP), o.MaxCount, m.Integrity);
}

public sealed record ModelsResponse(string DefaultModel, IReadOnlyList<ModelDto> Models);

public sealed record HealthResponse(string Status, IReadOnlyList<string> Models, QueueStats Queue);
