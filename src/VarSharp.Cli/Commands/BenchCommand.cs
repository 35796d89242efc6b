using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Data;
using VarSharp.Sampling;
using VarSharp.Training;

namespace VarSharp.Cli.Commands;

/// <summary>`bench`: sampling and tokenizer speed of one model, and memory over the run, with the ratios measured in one process.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var pipeline = new PipelineOptions();
        var batches = new Option<string>("--batch-sizes") { Description = "Batch sizes compared; the first is the baseline of the speed-ups", DefaultValueFactory = _ => "1,8,32" };
        var images = new Option<int>("--images") { Description = "Images sampled per measurement", DefaultValueFactory = _ => 32 };
        var repeats = new Option<int>("--repeats") { Description = "Measurements per figure (the median is shown)", DefaultValueFactory = _ => 3 };
        var compare = new Option<int>("--compare-batch") { Description = "Batch of the KV-cache-against-recompute comparison", DefaultValueFactory = _ => 8 };
        var cfg = new Option<double?>("--cfg") { Description = "Guidance scale (default: the model's recommended value, else 4)" };
        var topK = new Option<int?>("--top-k") { Description = "top-k, 0 = off (default: the model's recommended value)" };
        var topP = new Option<double?>("--top-p") { Description = "top-p, 0 = off (default: the model's recommended value)" };
        var threads = LongRun.ThreadsOption();
        var trainBatch = new Option<int>("--train-batch") { Description = "Batch of the training-step measurement, 0 = skip it", DefaultValueFactory = _ => 64 };
        var trainSteps = new Option<int>("--train-steps") { Description = "Training steps per measurement", DefaultValueFactory = _ => 3 };
        var json = new Option<string?>("--json") { Description = "Also write the figures to this JSON file" };
        var force = OutputFile.ForceOption();
        var command = new Command("bench",
            "Measure sampling speed per batch size, the KV cache against recomputing, tokenizer encode/decode speed and memory; prints ratios measured in one run");
        pipeline.AddTo(command);
        foreach (var o in new Option[] { batches, images, repeats, compare, cfg, topK, topP, trainBatch, trainSteps, threads, json, force }) command.Options.Add(o);
        command.SetAction(parse =>
        {
            LongRun.SetThreads(parse.GetValue(threads));
            var sizes = OptionText.Ints(parse.GetValue(batches)!, "--batch-sizes");
            int tb = parse.GetValue(trainBatch), ts = parse.GetValue(trainSteps);
            if (tb < 0) throw new VarSharpException($"--train-batch must be 0 (skip) or positive, found {tb}.");
            if (ts < 1) throw new VarSharpException($"--train-steps must be positive, found {ts}.");
            if (parse.GetValue(json) is { } jsonPath) OutputFile.Check(jsonPath, parse.GetValue(force));
            using var pipe = pipeline.Load(parse);
            var recommended = pipe.DefaultOptions();
            var options = new BenchmarkOptions
            {
                BatchSizes = sizes,
                Images = parse.GetValue(images),
                Repeats = parse.GetValue(repeats),
                CompareBatch = parse.GetValue(compare),
                Settings = (recommended with
                {
                    Cfg = parse.GetValue(cfg) ?? recommended.Cfg,
                    TopK = parse.GetResult(topK) is null ? recommended.TopK : parse.GetValue(topK),
                    TopP = parse.GetValue(topP) ?? recommended.TopP,
                }).ToSettings(pipe.VocabSize).Validate(pipe.Model.Config),
            }.Validate();
            var writer = parse.InvocationConfiguration.Output;
            var m = pipe.Model.Config;
            writer.WriteLine(Invariant(
                $"model: {pipe.ImageSize}x{pipe.ImageSize}, depth {m.Depth}, width {m.EmbedDim}, {m.L} tokens over {m.NumScales} scales, V={m.VocabSize}; cfg {options.Settings.Cfg}, top-k {options.Settings.TopK}, top-p {options.Settings.TopP}; {Environment.ProcessorCount} cores"));
            var r = SamplingBenchmark.Run(pipe, options, line => writer.WriteLine($"... {line}"));
            TrainStepRate? train = null, trainBf16 = null;
            if (tb > 0)
            {
                writer.WriteLine($"... training steps, batch {tb}");
                train = TrainStepBenchmark.Run(pipe, tb, ts, options.Repeats);
                writer.WriteLine($"... training steps in bf16 mixed precision, batch {tb}");
                try
                {
                    trainBf16 = TrainStepBenchmark.Run(pipe, tb, ts, options.Repeats, TorchSharp.torch.ScalarType.BFloat16);
                }
                catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException or NotSupportedException)
                {
                    // A device without bfloat16 kernels: the float32 figures still stand.
                    writer.WriteLine($"note: bf16 training could not be measured on this device: {e.Message.Split('\n')[0]}");
                }
            }
            // Half-precision sampling (`--dtype bf16`) against the float32 model, measured alternately in this process.
            (int Batch, double F32, double Bf16)? half = null;
            if (pipe.Model.parameters().First().dtype == TorchSharp.torch.ScalarType.Float32)
            {
                int hb = options.BatchSizes.Max();
                writer.WriteLine($"... sampling in bf16 against float32, batch {hb}");
                try
                {
                    using var bf16 = pipeline.Load(parse, TorchSharp.torch.ScalarType.BFloat16);
                    var (f32Rate, bf16Rate) = SamplingBenchmark.CompareRates(pipe, bf16, options, hb);
                    half = (hb, f32Rate, bf16Rate);
                }
                catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException or NotSupportedException)
                {
                    writer.WriteLine($"note: bf16 sampling could not be measured on this device: {e.Message.Split('\n')[0]}");
                }
            }
            writer.WriteLine(Report(r, options));
            if (half is { } h)
                writer.WriteLine(Invariant(
                    $"sampling in bf16 (`--dtype bf16`, batch {h.Batch}, alternating with float32, median of {options.Repeats}): {h.Bf16:0.0} images/s against {h.F32:0.0} in float32, {h.Bf16 / h.F32:0.00}x"));
            if (train is not null)
                writer.WriteLine(Invariant(
                    $"training (forward, loss, backward, clipping, AdamW; batch {train.BatchSize}, {train.StepsPerMeasurement} steps per measurement, median of {options.Repeats}): {train.StepsPerSecond:0.00} steps/s, {train.ImagesPerSecond:0.0} images/s in float32")
                    + (trainBf16 is null ? "" : Invariant($"; {trainBf16.StepsPerSecond:0.00} steps/s in bf16 mixed precision (`train --precision bf16`), {trainBf16.StepsPerSecond / train.StepsPerSecond:0.00}x")));
            if (parse.GetValue(json) is { } path)
            {
                var node = JsonSerializer.SerializeToNode(r, JsonOut)!.AsObject();
                node["training"] = train is null ? null : JsonSerializer.SerializeToNode(train, JsonOut);
                node["training_bf16"] = trainBf16 is null ? null : JsonSerializer.SerializeToNode(trainBf16, JsonOut);
                node["sampling_bf16"] = half is not { } hj ? null : new JsonObject
                {
                    ["batch_size"] = hj.Batch,
                    ["images_per_second"] = hj.Bf16,
                    ["float32_images_per_second"] = hj.F32,
                };
                ImageIO.WriteAtomically(path, Encoding.UTF8.GetBytes(node.ToJsonString(JsonOut)));
            }
            return 0;
        });
        return command;
    }

    private static readonly JsonSerializerOptions JsonOut = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The figures as the verb prints them.</summary>
    public static string Report(SamplingBenchmarkResult r, BenchmarkOptions o)
    {
        var s = new StringBuilder();
        s.AppendLine(Invariant($"sampling with the KV cache, {o.Images} images per measurement, median of {o.Repeats}, {r.Threads} threads:"));
        s.AppendLine("  batch | images/s | speed-up over batch " + r.Batches[0].BatchSize);
        foreach (var b in r.Batches)
            s.AppendLine(Invariant($"  {b.BatchSize,5} | {b.ImagesPerSecond,8:0.0} | {b.SpeedUp:0.00}x"));
        s.AppendLine(Invariant(
            $"KV cache against recomputing all positions at every scale (batch {r.CompareBatch}): {r.CachedSeconds * 1000:0} ms against {r.RecomputeSeconds * 1000:0} ms per batch, {r.CacheSpeedUp:0.00}x faster; max |logit difference| {r.MaxLogitDifference:0.0e+0}, same tokens: {(r.SameTokens ? "yes" : "no")}"));
        s.AppendLine(Invariant(
            $"tokenizer (batch {r.TokenizerBatch}): encode {r.EncodeImagesPerSecond:0.0} images/s, decode {r.DecodeImagesPerSecond:0.0} images/s"));
        s.Append(Invariant(
            $"memory over {r.SamplingsForMemory} samplings after warm-up: resident {r.RssAfterWarmUp / 1048576.0:0} -> {r.RssAfter / 1048576.0:0} MiB ({(r.RssAfter - r.RssAfterWarmUp) / 1048576.0:+0;-0;0} MiB), live tensors {r.LiveTensorsAfterWarmUp} -> {r.LiveTensorsAfter}"));
        return s.ToString();
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
