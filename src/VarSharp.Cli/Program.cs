System.Console.WriteLine("varsharp: commands coming");
