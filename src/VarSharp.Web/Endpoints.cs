using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace VarSharp.Web;

/// <summary>
/// The HTTP API: <c>POST /v1/generate</c>, the Server-Sent Events stream <c>/v1/generate/stream</c> (GET with a query or
/// POST with a body), <c>GET /v1/models</c>, <c>GET /healthz</c>, <c>GET /openapi/v1.json</c> and the page at <c>/</c>.
/// Handlers validate, queue and format; sampling is the library's.
/// </summary>
public static class VarEndpoints
{
    /// <summary>
    /// Read-only routes also answer HEAD (monitors and link checkers use it); Kestrel sends the headers and drops the
    /// body. The stream stays GET-only: a HEAD must not start a generation.
    /// </summary>
    internal static readonly string[] GetAndHead = [HttpMethods.Get, HttpMethods.Head];

    public static IEndpointRouteBuilder MapVarServer(this IEndpointRouteBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapMethods("/healthz", GetAndHead, (ModelRegistry models, GenerationQueue queue) =>
                TypedResults.Json(new HealthResponse("ok", models.Models.Select(m => m.Name).ToArray(), queue.Stats()), ApiJson.Options))
            .WithName("Health").WithTags("health").WithSummary("Liveness, loaded models and queue counters.").Produces<HealthResponse>();

        var v1 = app.MapGroup("/v1").WithTags("generation");
        v1.MapMethods("/models", GetAndHead, (ModelRegistry models, ServeOptions options) =>
                TypedResults.Json(new ModelsResponse(models.Default.Name, models.Models.Select(m => ModelDto.From(m, options)).ToArray()), ApiJson.Options))
            .WithName("Models").WithSummary("The models this server holds: image size, classes and their names, defaults.")
            .Produces<ModelsResponse>();

        v1.MapPost("/generate", GenerateAsync)
            .WithName("Generate").WithSummary("Generate images; answers when they are done, as base64 PNG with their parameters.")
            .WithMetadata(JsonBodyDoc.Instance)
            .Produces<GenerateResponse>()
            .Produces<ErrorDto>(StatusCodes.Status400BadRequest)
            .Produces<ErrorDto>(StatusCodes.Status429TooManyRequests)
            .Produces<ErrorDto>(StatusCodes.Status503ServiceUnavailable);

        v1.MapPost("/generate/stream", (HttpContext ctx, ModelRegistry models) => StreamAsync(ctx, models, fromQuery: false))
            .WithName("GenerateStreamPost").WithSummary("As POST /v1/generate, streamed as Server-Sent Events: start, one scale event per scale, done.")
            .WithMetadata(JsonBodyDoc.Instance)
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .Produces<ErrorDto>(StatusCodes.Status400BadRequest)
            .Produces<ErrorDto>(StatusCodes.Status429TooManyRequests);

        v1.MapGet("/generate/stream", (HttpContext ctx,
                // Declared for the OpenAPI description only, as text so that binding never fails: the request is read
                // from the query by GenerateRequest, which answers a bad value with a clear 400.
                [FromQuery] string? model, [FromQuery(Name = "class")] string? @class, [FromQuery] string? count,
                [FromQuery] string? cfg, [FromQuery(Name = "top_k")] string? topK, [FromQuery(Name = "top_p")] string? topP,
                [FromQuery] string? seed, [FromQuery(Name = "more_smooth")] string? moreSmooth, ModelRegistry models) => StreamAsync(ctx, models, fromQuery: true))
            .WithName("GenerateStream").WithSummary("Server-Sent Events (EventSource-friendly): start, one scale event per scale, done.")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .Produces<ErrorDto>(StatusCodes.Status400BadRequest)
            .Produces<ErrorDto>(StatusCodes.Status429TooManyRequests);

        app.MapOpenApi("/openapi/{documentName}.json");
        StaticPage.Map(app);
        return app;
    }

    /// <summary>
    /// Marks an endpoint whose body is a <see cref="GenerateRequestBody"/> for the OpenAPI description. (Accepts() would
    /// also make routing refuse other content types with an empty 415; the server reads any body as JSON instead.)
    /// </summary>
    internal sealed class JsonBodyDoc
    {
        public static readonly JsonBodyDoc Instance = new();
    }

    private static async Task<IResult> GenerateAsync(HttpContext ctx, ModelRegistry models, GenerationQueue queue, ServeOptions options,
        IHostApplicationLifetime lifetime, ILoggerFactory loggers)
    {
        GenerationParams p;
        try
        {
            p = await GenerateRequest.FromBodyAsync(ctx.Request, models, options, ctx.RequestAborted);
        }
        catch (ApiException e)
        {
            return Error(e.Status, e.Message);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return Results.Empty;
        }

        using var timeout = new CancellationTokenSource(options.RequestTimeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, timeout.Token, lifetime.ApplicationStopping);
        GenerationJob job;
        try
        {
            job = queue.Enqueue(p, wantFrames: false, linked.Token);
        }
        catch (QueueFullException e)
        {
            ctx.Response.Headers.RetryAfter = "1";
            return Error(StatusCodes.Status429TooManyRequests, e.Message);
        }
        catch (ObjectDisposedException)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, "the server is stopping.");
        }
        using (job)
        {
            long started = Stopwatch.GetTimestamp();
            try
            {
                var result = await job.Completion;
                return TypedResults.Json(Response(p, result, started), ApiJson.Options);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                var (status, message) = WhyEnded(ctx, timeout, lifetime, options, queue);
                return status == 0 ? Results.Empty : Error(status, message);
            }
            catch (Exception e)
            {
                return Error(StatusCodes.Status500InternalServerError, Failed(loggers, e));
            }
        }
    }

    private static async Task StreamAsync(HttpContext ctx, ModelRegistry models, bool fromQuery)
    {
        var services = ctx.RequestServices;
        var queue = services.GetRequiredService<GenerationQueue>();
        var options = services.GetRequiredService<ServeOptions>();
        var lifetime = services.GetRequiredService<IHostApplicationLifetime>();
        if (fromQuery && ctx.Request.Headers.ContainsKey("Last-Event-ID"))
        {
            // An EventSource reconnecting after the stream ended (or broke): a generation cannot be resumed, and 204
            // is what tells EventSource to stop reconnecting.
            ctx.Response.StatusCode = StatusCodes.Status204NoContent;
            return;
        }
        GenerationParams p;
        try
        {
            p = fromQuery
                ? GenerateRequest.FromQuery(ctx.Request.Query, models, options)
                : await GenerateRequest.FromBodyAsync(ctx.Request, models, options, ctx.RequestAborted);
        }
        catch (ApiException e)
        {
            await Error(e.Status, e.Message).ExecuteAsync(ctx);
            return;
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        using var timeout = new CancellationTokenSource(options.RequestTimeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, timeout.Token, lifetime.ApplicationStopping);
        GenerationJob job;
        try
        {
            job = queue.Enqueue(p, wantFrames: true, linked.Token);
        }
        catch (QueueFullException e)
        {
            ctx.Response.Headers.RetryAfter = "1";
            await Error(StatusCodes.Status429TooManyRequests, e.Message).ExecuteAsync(ctx);
            return;
        }
        catch (ObjectDisposedException)
        {
            await Error(StatusCodes.Status503ServiceUnavailable, "the server is stopping.").ExecuteAsync(ctx);
            return;
        }

        using (job)
        {
            long started = Stopwatch.GetTimestamp();
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "text/event-stream";
            ctx.Response.Headers.CacheControl = "no-cache";
            ctx.Response.Headers["X-Accel-Buffering"] = "no";
            try
            {
                await WriteEventAsync(ctx, "start", "start", new StartEvent(ParamsDto.From(p), p.Model.PatchNums, p.Model.ImageSize), linked.Token);
                await foreach (var frame in job.FrameReader!.ReadAllAsync(linked.Token))
                {
                    var images = frame.Png.Select((png, i) => new ScaleImageDto(i, Convert.ToBase64String(png))).ToArray();
                    await WriteEventAsync(ctx, "scale", $"scale-{frame.ScaleIndex}", new ScaleEvent(frame.ScaleIndex, frame.NumScales, frame.PatchSize, images), linked.Token);
                }
                var result = await job.Completion;
                // The images exist: only the client leaving stops them now, so a timeout firing during this write
                // cannot follow "done" with an error for a request that succeeded.
                await WriteEventAsync(ctx, "done", "done", Response(p, result, started), ctx.RequestAborted);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                var (status, message) = WhyEnded(ctx, timeout, lifetime, options, queue);
                if (status != 0) await TryWriteEventAsync(ctx, "error", new ErrorDto(message, status));
            }
            catch (Exception e)
            {
                await TryWriteEventAsync(ctx, "error", new ErrorDto(Failed(services.GetRequiredService<ILoggerFactory>(), e), 500));
            }
        }
    }

    /// <summary>Why a request ended early: timeout or server stopping (a status and a sentence), or its client left (status 0).</summary>
    private static (int Status, string Message) WhyEnded(HttpContext ctx, CancellationTokenSource timeout, IHostApplicationLifetime lifetime,
        ServeOptions options, GenerationQueue queue)
    {
        if (ctx.RequestAborted.IsCancellationRequested) return (0, "");
        if (timeout.IsCancellationRequested)
        {
            queue.CountTimeout();
            return (StatusCodes.Status503ServiceUnavailable, string.Create(CultureInfo.InvariantCulture,
                $"the request timed out after {options.RequestTimeout.TotalSeconds:0.###} s (queue wait and sampling together); try again or ask for fewer images."));
        }
        if (lifetime.ApplicationStopping.IsCancellationRequested) return (StatusCodes.Status503ServiceUnavailable, "the server is stopping.");
        return (StatusCodes.Status503ServiceUnavailable, "the request was cancelled by the server.");
    }

    /// <summary>
    /// Logs a failed generation under a short reference and returns the sentence the client gets: the exception's own
    /// text stays in the log, since libtorch's carries a multi-line C++ backtrace with the server's paths.
    /// </summary>
    private static string Failed(ILoggerFactory loggers, Exception e)
    {
        var reference = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        loggers.CreateLogger("VarSharp.Web").LogError(e, "generation failed (ref {Reference})", reference);
        return $"generation failed on the server (ref {reference}); its log has the details.";
    }

    private static GenerateResponse Response(GenerationParams p, JobResult r, long started) => new(
        ParamsDto.From(p),
        r.Images.Select(im => ImageDto.From(im, p.Model)).ToArray(),
        new TimingDto(Math.Round(r.QueuedMs, 2), Math.Round(r.SampleMs, 2), Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 2),
            r.BatchImages, r.BatchRequests));

    private static IResult Error(int status, string message) => TypedResults.Json(new ErrorDto(message), ApiJson.Options, statusCode: status);

    /// <summary>One Server-Sent Event: its type, an id (so that a reconnecting EventSource sends Last-Event-ID) and one line of JSON.</summary>
    private static async Task WriteEventAsync<T>(HttpContext ctx, string name, string id, T data, CancellationToken ct)
    {
        var json = JsonSerializer.Serialize(data, ApiJson.Options);
        await ctx.Response.WriteAsync($"event: {name}\nid: {id}\ndata: {json}\n\n", Encoding.UTF8, ct);
        await ctx.Response.Body.FlushAsync(ct);
    }

    private static async Task TryWriteEventAsync<T>(HttpContext ctx, string name, T data)
    {
        try
        {
            await WriteEventAsync(ctx, name, name, data, ctx.RequestAborted);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The client is gone; nothing left to tell it.
        }
    }
}
