using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Evaluation;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>
/// `train-classifier`: trains the Fashion-MNIST judge used by `eval` (class consistency, Fréchet distance and
/// precision/recall on its features), measures its test accuracy and writes it as a verified bundle.
/// </summary>
internal static class TrainClassifierCommand
{
    private static readonly ClassifierTrainOptions Defaults = new() { Epochs = 10 };

    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = $"Fashion-MNIST idx folder or labelled image folder (default {FashionMnist.DefaultDirectory})", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
        var output = new Option<string>("--out", "-o") { Description = "Bundle folder to write (config.json, model.safetensors, manifest.json)", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace an existing bundle at --out" };
        var epochs = new Option<int>("--epochs") { Description = $"Passes over the training split ({Defaults.Epochs})", DefaultValueFactory = _ => Defaults.Epochs };
        var batch = new Option<int>("--batch-size", "-b") { Description = $"Images per step ({Defaults.BatchSize})", DefaultValueFactory = _ => Defaults.BatchSize };
        var lr = new Option<double>("--lr") { Description = $"Peak AdamW learning rate, cosine-decayed to 0 ({Defaults.LearningRate})", DefaultValueFactory = _ => Defaults.LearningRate };
        var weightDecay = new Option<double>("--weight-decay") { Description = $"AdamW weight decay ({Defaults.WeightDecay})", DefaultValueFactory = _ => Defaults.WeightDecay };
        var seed = new Option<ulong>("--seed") { Description = $"Seed for the init, the shuffle and the shifts ({Defaults.Seed})", DefaultValueFactory = _ => Defaults.Seed };
        var threads = new Option<int?>("--threads") { Description = "torch threads (same seed + same threads → identical weights)" };
        var imageSize = new Option<int>("--image-size") { Description = $"Input size, a multiple of 8; Fashion-MNIST's 28×28 is padded ({FashionClassifier.DefaultImageSize})", DefaultValueFactory = _ => FashionClassifier.DefaultImageSize };
        var trainImages = new Option<int>("--train-images") { Description = "Use only the first N training images (0 = all)", DefaultValueFactory = _ => 0 };
        var device = DeviceOption.Create();
        var testImages = new Option<int>("--test-images") { Description = "Measure accuracy on the first N test images (0 = all)", DefaultValueFactory = _ => 0 };
        var command = new Command("train-classifier",
            "Train the Fashion-MNIST classifier that `eval` uses as its judge, report its test accuracy and write it as a bundle; see docs/evaluation.md")
        {
            data, output, force, epochs, batch, lr, weightDecay, seed, threads, imageSize, trainImages, testImages, device,
        };
        command.SetAction(parse =>
        {
            LongRun.SetThreads(parse.GetValue(threads));
            var onDevice = DeviceOption.Of(parse, device);
            var outDir = parse.GetRequiredValue(output);
            ModelBundle.CheckOutput(Path.GetFullPath(outDir), parse.GetValue(force));
            int size = parse.GetValue(imageSize);
            if (size <= 0 || size % 8 != 0) throw new VarSharpException($"--image-size must be a positive multiple of 8 but is {size}.");
            var options = new ClassifierTrainOptions
            {
                Epochs = parse.GetValue(epochs),
                BatchSize = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr),
                WeightDecay = parse.GetValue(weightDecay),
                Seed = parse.GetValue(seed),
            };
            int nTrain = parse.GetValue(trainImages), nTest = parse.GetValue(testImages);
            if (nTrain < 0) throw new VarSharpException($"--train-images must be 0 (all) or positive but is {nTrain}.");
            if (nTest < 0) throw new VarSharpException($"--test-images must be 0 (all) or positive but is {nTest}.");

            var writer = parse.InvocationConfiguration.Output;
            var dataPath = parse.GetRequiredValue(data);
            var train = Datasets.Open(dataPath, DataSplit.Train, 1, size);
            var test = Datasets.Open(dataPath, DataSplit.Test, 1, size);
            options = options with { NumClasses = train.ClassNames.Count };
            options.Validate();

            var (trainX, trainY) = DatasetTensors.Load(train, FirstN(train, nTrain));
            var (testX, testY) = DatasetTensors.Load(test, FirstN(test, nTest));
            using (trainX)
            using (trainY)
            using (testX)
            using (testY)
            {
                writer.WriteLine(Invariant(
                    $"training the classifier on {trainX.shape[0]} images of {train.Description}; {options.NumClasses} classes, {options.Epochs} epochs, batch {options.BatchSize}, lr {options.LearningRate}, seed {options.Seed}, {get_num_threads()} threads"));
                var clock = Stopwatch.StartNew();
                using var model = CliConsole.IsTerminal(writer)
                    ? WithProgress(writer, trainX, trainY, options, onDevice)
                    : ClassifierTrainer.Train(trainX, trainY, options, (step, total, loss) =>
                        writer.WriteLine(Invariant($"step {step}/{total} loss {loss:0.0000}")), onDevice);
                double trainSeconds = clock.Elapsed.TotalSeconds;
                double accuracy = ClassifierTrainer.Accuracy(model, testX, testY);
                var info = new ClassifierInfo
                {
                    ClassNames = train.ClassNames.ToArray(),
                    TestAccuracy = Math.Round(accuracy, 6),
                    TestImages = (int)testX.shape[0],
                    Seed = options.Seed,
                    Epochs = options.Epochs,
                    BatchSize = options.BatchSize,
                    Lr = options.LearningRate,
                    WeightDecay = options.WeightDecay,
                    TrainImages = (int)trainX.shape[0],
                    Data = train.Description,
                };
                model.Save(outDir, info, parse.GetValue(force));
                var manifest = ModelBundle.Verify(outDir);
                writer.WriteLine(Invariant(
                    $"test accuracy {accuracy:0.0000} on {testX.shape[0]} images; trained in {trainSeconds:0} s"));
                writer.WriteLine($"wrote {outDir} (model.safetensors sha256 {manifest.Files[ModelBundle.WeightsFileName].Sha256})");
            }
            return 0;
        });
        return command;
    }

    private static int[]? FirstN(IImageDataset data, int n) => n <= 0 || n >= data.Count ? null : Enumerable.Range(0, n).ToArray();

    private static FashionClassifier WithProgress(TextWriter writer, Tensor x, Tensor y, ClassifierTrainOptions options, Device device) =>
        CliConsole.For(writer).Progress()
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training");
                return ClassifierTrainer.Train(x, y, options, (step, total, loss) =>
                {
                    task.MaxValue = total;
                    task.Value = step;
                    task.Description = Invariant($"step {step}/{total} loss {loss:0.0000}");
                }, device);
            });

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
